"""The sample-wise engine against the batched computation (materialised logits + the core op /
torchaudio / the pure-PyTorch reference), its planner, modes, mixed precision and bad input."""
import pytest
import torch

import samplewise_rnnt as swr
from samplewise_rnnt import engine as E
from samplewise_rnnt.planner import Group, plan_groups
from samplewise_rnnt.reference import batched_rnnt_loss

REDUCTIONS = ["none", "sum", "mean", "mean_volume"]


class TanhJoint(torch.nn.Module):
    """ESPnet's JointNetwork shape: Linear(enc) + Linear(pred), tanh, Linear."""

    def __init__(self, he, hp, hj, v, act=torch.tanh, dropout=0.0):
        super().__init__()
        self.lin_enc = torch.nn.Linear(he, hj)
        self.lin_dec = torch.nn.Linear(hp, hj, bias=False)
        self.lin_out = torch.nn.Linear(hj, v)
        self.act = act
        self.drop = torch.nn.Dropout(dropout)

    def forward(self, enc, pred):
        return self.lin_out(self.drop(self.act(self.lin_enc(enc) + self.lin_dec(pred))))


class BilinearLogSoftmaxJoint(torch.nn.Module):
    """No Linear-act-Linear structure: a gated product, and a log_softmax whose backward reads its own
    output (so the engine must not overwrite the logits with their gradient)."""

    def __init__(self, he, hp, v):
        super().__init__()
        self.a = torch.nn.Parameter(torch.randn(he, v) / he ** 0.5)
        self.b = torch.nn.Parameter(torch.randn(hp, v) / hp ** 0.5)

    def forward(self, enc, pred):
        x = (enc @ self.a) * torch.sigmoid(pred @ self.b) + pred @ self.b
        return torch.log_softmax(x, dim=-1)


def relu_joint(he, hp, v):
    return TanhJoint(he, hp, 12, v, act=torch.relu)


def plain_function_joint(enc, pred):
    """A callable without parameters: logits = enc + pred (He = Hp = V)."""
    return enc + pred


def make_batch(B=5, T=7, U=4, He=6, Hp=5, V=9, seed=0, dtype=torch.float32, blank=-1):
    g = torch.Generator().manual_seed(seed)
    enc = torch.randn(B, T, He, generator=g, dtype=dtype)
    pred = torch.randn(B, U + 1, Hp, generator=g, dtype=dtype)
    tl = torch.randint(1, T + 1, (B,), generator=g)
    tl[0] = T
    ul = torch.randint(0, U + 1, (B,), generator=g)
    ul[1 % B] = U
    labels = [v for v in range(V) if v != blank % V]
    tg = torch.tensor(labels)[torch.randint(0, len(labels), (B, U), generator=g)]
    return enc, pred, tg, tl.int(), ul


def loss_and_grads(fn, enc, pred, joint, weights=None):
    """Run fn(enc, pred), backward with weights (for reduction none), return [loss, d enc, d pred, d params]."""
    enc = enc.detach().clone().requires_grad_(True)
    pred = pred.detach().clone().requires_grad_(True)
    params = list(joint.parameters()) if isinstance(joint, torch.nn.Module) else []
    for p in params:
        p.grad = None
    loss = fn(enc, pred)
    (loss * weights if weights is not None and loss.dim() else loss).sum().backward()
    return [loss.detach(), enc.grad, pred.grad] + [p.grad.clone() for p in params]


def assert_all_close(a, b, rtol=1e-4, atol=1e-5):
    assert len(a) == len(b)
    for i, (x, y) in enumerate(zip(a, b)):
        torch.testing.assert_close(x.float(), y.float(), rtol=rtol, atol=atol, msg=lambda m: f"item {i}: {m}")


JOINTS = {
    "tanh": lambda: TanhJoint(6, 5, 12, 9),
    "relu": lambda: relu_joint(6, 5, 9),
    "bilinear_logsoftmax": lambda: BilinearLogSoftmaxJoint(6, 5, 9),
}


@pytest.mark.parametrize("joint_name", list(JOINTS))
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("max_chunk_bytes", [1, 9 * 4 * 2 * 60, None, float("inf")])
def test_matches_batched_core_op(joint_name, reduction, max_chunk_bytes):
    torch.manual_seed(1)
    joint = JOINTS[joint_name]()
    enc, pred, tg, tl, ul = make_batch(seed=3)
    w = torch.rand(enc.shape[0]) + 0.5 if reduction == "none" else None
    kw = dict(reduction=reduction, clamp=-1.0)
    ours = loss_and_grads(lambda e, p: swr.samplewise_rnnt_loss(e, p, joint, tg, tl, ul, max_chunk_bytes=max_chunk_bytes,
                                                                **kw), enc, pred, joint, w)
    ref = loss_and_grads(lambda e, p: swr.rnnt_loss(joint(e.unsqueeze(2), p.unsqueeze(1)), tg, tl, ul, **kw),
                         enc, pred, joint, w)
    assert_all_close(ours, ref)


@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_matches_torchaudio(reduction):
    torchaudio = pytest.importorskip("torchaudio")
    torch.manual_seed(2)
    joint = TanhJoint(6, 5, 12, 9)
    enc, pred, tg, tl, ul = make_batch(B=6, T=8, U=5, seed=4, blank=8)
    w = torch.rand(6) + 0.5 if reduction == "none" else None
    ours = loss_and_grads(lambda e, p: swr.samplewise_rnnt_loss(e, p, joint, tg, tl, ul, blank=-1, reduction=reduction,
                                                                max_chunk_bytes=2000), enc, pred, joint, w)
    ref = loss_and_grads(lambda e, p: torchaudio.functional.rnnt_loss(joint(e.unsqueeze(2), p.unsqueeze(1)),
                                                                      tg.int(), tl.int(), ul.int(), blank=8,
                                                                      reduction=reduction), enc, pred, joint, w)
    assert_all_close(ours, ref)


def test_matches_autograd_reference_with_clamp_fastemit_and_plain_callable():
    enc, pred, tg, tl, ul = make_batch(B=4, T=6, U=3, He=9, Hp=9, V=9, seed=5)
    kw = dict(reduction="sum", fastemit_lambda=0.1)
    ours = loss_and_grads(lambda e, p: swr.samplewise_rnnt_loss(e, p, plain_function_joint, tg, tl, ul,
                                                                max_chunk_bytes=1, **kw), enc, pred, None)
    ref = loss_and_grads(lambda e, p: batched_rnnt_loss(e, p, plain_function_joint, tg, tl, ul, **kw), enc, pred, None)
    assert_all_close(ours, ref)
    # clamp: against the core op on the materialised logits
    kw = dict(reduction="mean", clamp=0.05)
    ours = loss_and_grads(lambda e, p: swr.samplewise_rnnt_loss(e, p, plain_function_joint, tg, tl, ul, **kw),
                          enc, pred, None)
    ref = loss_and_grads(lambda e, p: swr.rnnt_loss(plain_function_joint(e.unsqueeze(2), p.unsqueeze(1)), tg, tl, ul,
                                                    **kw), enc, pred, None)
    assert_all_close(ours, ref)


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_gradcheck_fp64(reduction):
    torch.manual_seed(0)
    joint = TanhJoint(3, 3, 4, 5).double()
    enc, pred, tg, tl, ul = make_batch(B=3, T=3, U=2, He=3, Hp=3, V=5, seed=6, dtype=torch.float64)
    enc.requires_grad_(True)
    pred.requires_grad_(True)
    w = joint.lin_out.weight

    def f(e, p, weight):
        return swr.samplewise_rnnt_loss(e, p, joint, tg, tl, ul, reduction=reduction, max_chunk_bytes=1)

    assert torch.autograd.gradcheck(f, (enc, pred, w), eps=1e-6, atol=1e-5)


def test_none_reduction_without_joint_params_scales_per_sample():
    enc, pred, tg, tl, ul = make_batch(B=4, T=6, U=3, He=9, Hp=9, V=9, seed=7)
    w = torch.tensor([0.0, -1.0, 2.5, 0.3])
    ours = loss_and_grads(lambda e, p: swr.samplewise_rnnt_loss(e, p, plain_function_joint, tg, tl, ul,
                                                                reduction="none"), enc, pred, None, w)
    ref = loss_and_grads(lambda e, p: swr.rnnt_loss(plain_function_joint(e.unsqueeze(2), p.unsqueeze(1)), tg, tl, ul,
                                                    reduction="none"), enc, pred, None, w)
    assert_all_close(ours, ref)


def test_no_grad_gives_loss_only():
    joint = TanhJoint(6, 5, 12, 9)
    enc, pred, tg, tl, ul = make_batch(seed=8)
    with torch.no_grad():
        ref = swr.rnnt_loss(joint(enc.unsqueeze(2), pred.unsqueeze(1)), tg, tl, ul, reduction="none")
        enc_rg = enc.clone().requires_grad_(True)
        out = swr.samplewise_rnnt_loss(enc_rg, pred, joint, tg, tl, ul, reduction="none", max_chunk_bytes=1)
    assert out.grad_fn is None and not out.requires_grad
    torch.testing.assert_close(out, ref)
    # no input needs a gradient (joint frozen, inputs plain tensors): the loss only, no graph
    joint.requires_grad_(False)
    out2 = swr.samplewise_rnnt_loss(enc, pred, joint, tg, tl, ul, reduction="mean")
    assert out2.grad_fn is None
    torch.testing.assert_close(out2, ref.mean())


def test_only_encoder_needs_grad():
    joint = TanhJoint(6, 5, 12, 9).requires_grad_(False)
    enc, pred, tg, tl, ul = make_batch(seed=9)
    e1 = enc.clone().requires_grad_(True)
    swr.samplewise_rnnt_loss(e1, pred, joint, tg, tl, ul, max_chunk_bytes=1).backward()
    e2 = enc.clone().requires_grad_(True)
    swr.rnnt_loss(joint(e2.unsqueeze(2), pred.unsqueeze(1)), tg, tl, ul).backward()
    torch.testing.assert_close(e1.grad, e2.grad)


def test_nothing_of_size_tuv_is_kept_for_backward():
    joint = TanhJoint(6, 5, 12, 9)
    enc, pred, tg, tl, ul = make_batch(B=3, T=20, U=10, seed=10)
    enc.requires_grad_(True)
    for reduction in ("mean", "none"):
        loss = swr.samplewise_rnnt_loss(enc, pred, joint, tg, tl, ul, reduction=reduction, max_chunk_bytes=1)
        saved = loss.grad_fn.saved_tensors
        assert saved and max(t.numel() for t in saved) < 20 * 11 * 9  # one sample's logits
        assert max(t.numel() for t in saved) <= enc.numel()


def test_double_backward_is_refused():
    joint = TanhJoint(6, 5, 12, 9)
    enc, pred, tg, tl, ul = make_batch(seed=11)
    enc.requires_grad_(True)
    loss = swr.samplewise_rnnt_loss(enc, pred, joint, tg, tl, ul)
    with pytest.raises(RuntimeError, match="does not support double backward"):
        torch.autograd.grad(loss, enc, create_graph=True)


def test_composes_with_other_losses_and_accumulation():
    torch.manual_seed(3)
    joint = TanhJoint(6, 5, 12, 9)
    enc, pred, tg, tl, ul = make_batch(seed=12)
    enc2, pred2, tg2, tl2, ul2 = make_batch(seed=13)

    def step(fn):
        joint.zero_grad()
        for (e, p, t, a, b) in ((enc, pred, tg, tl, ul), (enc2, pred2, tg2, tl2, ul2)):  # two accumulation steps
            e = e.clone().requires_grad_(True)
            aux = (e ** 2).mean()  # stands in for a CTC loss on the encoder output
            (fn(e, p, t, a, b) + 0.3 * aux).backward()
        return [p.grad.clone() for p in joint.parameters()]

    ours = step(lambda e, p, t, a, b: swr.samplewise_rnnt_loss(e, p, joint, t, a, b, max_chunk_bytes=1))
    ref = step(lambda e, p, t, a, b: swr.rnnt_loss(joint(e.unsqueeze(2), p.unsqueeze(1)), t, a, b))
    assert_all_close(ours, ref)


@pytest.mark.parametrize("reduction", ["mean", "none"])
def test_dropout_gradient_belongs_to_the_forward_mask(reduction):
    """With one group holding the whole batch in its own order (sizes already descending), the engine
    draws exactly the batched computation's dropout masks; its loss and gradients (recomputed in
    backward for reduction none) must then equal the batched ones."""
    joint = TanhJoint(6, 5, 12, 9, dropout=0.3).train()
    enc, pred, tg, tl, ul = make_batch(B=4, seed=14)
    tl = torch.tensor([7, 6, 5, 3], dtype=torch.int32)
    ul = torch.tensor([4, 3, 2, 1])
    w = torch.tensor([1.0, -2.0, 0.5, 3.0]) if reduction == "none" else None

    def seeded(fn):
        def run(e, p):
            torch.manual_seed(123)
            return fn(e, p)
        return run

    ours = loss_and_grads(seeded(lambda e, p: swr.samplewise_rnnt_loss(e, p, joint, tg, tl, ul, reduction=reduction,
                                                                       max_chunk_bytes=float("inf"))), enc, pred,
                          joint, w)
    ref = loss_and_grads(seeded(lambda e, p: swr.rnnt_loss(joint(e.unsqueeze(2), p.unsqueeze(1)), tg, tl, ul,
                                                           reduction=reduction)), enc, pred, joint, w)
    assert_all_close(ours, ref)
    # chunked: the recomputed backward sees the forward's masks, so d(sum of weighted losses) matches a
    # scalar-reduction run from the same seed (which computes its gradients in forward)
    torch.manual_seed(7)
    e = enc.clone().requires_grad_(True)
    joint.zero_grad()
    swr.samplewise_rnnt_loss(e, pred, joint, tg, tl, ul, reduction="none", max_chunk_bytes=1).sum().backward()
    g_none = [e.grad.clone()] + [p.grad.clone() for p in joint.parameters()]
    torch.manual_seed(7)
    e = enc.clone().requires_grad_(True)
    joint.zero_grad()
    swr.samplewise_rnnt_loss(e, pred, joint, tg, tl, ul, reduction="sum", max_chunk_bytes=1).backward()
    g_sum = [e.grad.clone()] + [p.grad.clone() for p in joint.parameters()]
    assert_all_close(g_none, g_sum)


def test_autocast_bf16_matches_batched_bf16():
    torch.manual_seed(4)
    joint = TanhJoint(6, 5, 12, 9)
    enc, pred, tg, tl, ul = make_batch(seed=15)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        ours = loss_and_grads(lambda e, p: swr.samplewise_rnnt_loss(e, p, joint, tg, tl, ul, max_chunk_bytes=1),
                              enc, pred, joint)
        ref = loss_and_grads(lambda e, p: swr.rnnt_loss(joint(e.unsqueeze(2), p.unsqueeze(1)), tg, tl, ul), enc,
                             pred, joint)
    assert ours[0].dtype == torch.float32
    assert_all_close(ours, ref, rtol=2e-2, atol=2e-3)


def test_fp16_gradients_do_not_underflow_before_the_grad_scaler():
    """GradScaler-style: loss * S, backward, grads / S. The batched fp16 computation keeps small
    gradients only thanks to S; the engine, which computes them in forward before S is known, must be
    at least as accurate against the fp32 result."""
    torch.manual_seed(5)
    B, V = 256, 64
    joint = TanhJoint(6, 5, 16, V)
    enc, pred, tg, tl, ul = make_batch(B=B, T=4, U=2, V=V, seed=16)
    ref = loss_and_grads(lambda e, p: swr.rnnt_loss(joint(e.unsqueeze(2), p.unsqueeze(1)), tg, tl, ul), enc, pred,
                         joint)
    S = 2.0 ** 16

    def scaled(fn):
        out = loss_and_grads(lambda e, p: fn(e, p) * S, enc, pred, joint)
        return [out[0] / S] + [g / S for g in out[1:]]

    with torch.autocast("cpu", dtype=torch.float16):
        ours = scaled(lambda e, p: swr.samplewise_rnnt_loss(e, p, joint, tg, tl, ul, max_chunk_bytes=1))
        batched = scaled(lambda e, p: swr.rnnt_loss(joint(e.unsqueeze(2), p.unsqueeze(1)), tg, tl, ul))
    for i in range(1, len(ref)):
        err_ours = float((ours[i] - ref[i]).norm() / ref[i].norm())
        err_batched = float((batched[i] - ref[i]).norm() / ref[i].norm())
        assert torch.isfinite(ours[i]).all()
        assert err_ours <= 2 * err_batched + 1e-3, (i, err_ours, err_batched)
    # without a scale at all, the engine's gradients still carry their small values
    with torch.autocast("cpu", dtype=torch.float16):
        out = loss_and_grads(lambda e, p: swr.samplewise_rnnt_loss(e, p, joint, tg, tl, ul), enc, pred, joint)
    assert float((out[1] - ref[1]).norm() / ref[1].norm()) < 1e-2


def test_fp16_overflow_is_retried_with_a_smaller_scale(monkeypatch):
    """A normalisation so large that the joint's fp16 backward overflows: the engine recomputes the
    group with a smaller one and still returns finite, correct gradients."""
    monkeypatch.setattr(E, "FP16_GRAD_NORM", 2.0 ** 20)
    torch.manual_seed(6)
    joint = TanhJoint(6, 5, 16, 9)
    enc, pred, tg, tl, ul = make_batch(seed=17)
    ref = loss_and_grads(lambda e, p: swr.rnnt_loss(joint(e.unsqueeze(2), p.unsqueeze(1)), tg, tl, ul), enc, pred,
                         joint)
    with torch.autocast("cpu", dtype=torch.float16):
        ours = loss_and_grads(lambda e, p: swr.samplewise_rnnt_loss(e, p, joint, tg, tl, ul), enc, pred, joint)
    for x in ours:
        assert torch.isfinite(x).all()
    assert_all_close(ours, ref, rtol=3e-2, atol=3e-3)


def test_module_form():
    torch.manual_seed(7)
    joint = TanhJoint(6, 5, 12, 9)
    mod = swr.SampleWiseRNNTLoss(joint, reduction="sum", max_chunk_bytes=1)
    assert any(n.startswith("joint.") for n, _ in mod.named_parameters())
    enc, pred, tg, tl, ul = make_batch(seed=18)
    torch.testing.assert_close(mod(enc, pred, tg, tl, ul).detach(),
                               swr.rnnt_loss(joint(enc.unsqueeze(2), pred.unsqueeze(1)), tg, tl, ul,
                                             reduction="sum").detach())
    assert "max_chunk_bytes=1" in repr(mod)


def test_inputs_are_not_modified():
    joint = TanhJoint(6, 5, 12, 9)
    enc, pred, tg, tl, ul = make_batch(seed=19)
    copies = [x.clone() for x in (enc, pred, tg, tl, ul)]
    e = enc.requires_grad_(True)
    swr.samplewise_rnnt_loss(e, pred, joint, tg, tl, ul).backward()
    for x, c in zip((enc, pred, tg, tl, ul), copies):
        assert torch.equal(x.detach(), c)


# ---------------------------------------------------------------------------------------------
# planner
# ---------------------------------------------------------------------------------------------
def test_planner_groups_cover_every_sample_once_within_budget():
    g = torch.Generator().manual_seed(0)
    T = torch.randint(1, 50, (40,), generator=g).tolist()
    U = torch.randint(0, 20, (40,), generator=g).tolist()
    for budget in (1, 5000, 40000, 10 ** 9, None):
        groups = plan_groups(T, U, bytes_per_node=4, max_chunk_bytes=budget)
        seen = sorted(b for gr in groups for b in gr.samples)
        assert seen == list(range(40))
        for gr in groups:
            assert gr.T == max(T[b] for b in gr.samples) and gr.U1 == max(U[b] + 1 for b in gr.samples)
            if budget is not None and len(gr.samples) > 1:
                assert gr.nodes * 4 <= budget
        sizes = [T[b] * (U[b] + 1) for gr in groups for b in gr.samples]
        assert sizes == sorted(sizes, reverse=True)
    assert all(len(gr.samples) == 1 for gr in plan_groups(T, U, 4, 1))
    assert len(plan_groups(T, U, 4, None)) == 1
    assert plan_groups([3, 5], [1, 2], 8, 10 ** 6) == [Group([1, 0], 5, 3)]


def test_planner_bad_budget():
    with pytest.raises(ValueError, match="max_chunk_bytes must be a positive"):
        plan_groups([3], [1], 4, 0)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------
def bad_call(**over):
    joint = TanhJoint(6, 5, 12, 9)
    enc, pred, tg, tl, ul = make_batch(seed=20)
    args = dict(encoder_out=enc, predictor_out=pred, joint=joint, targets=tg, encoder_lengths=tl, target_lengths=ul)
    args.update(over)
    return swr.samplewise_rnnt_loss(**args)


def test_bad_input():
    enc, pred, tg, tl, ul = make_batch(seed=20)
    with pytest.raises(ValueError, match="encoder_out must have 3 dimensions"):
        bad_call(encoder_out=enc[0])
    with pytest.raises(ValueError, match="predictor_out has batch size 4 but encoder_out has 5"):
        bad_call(predictor_out=pred[:4])
    with pytest.raises(ValueError, match="targets has 3 columns but the U\\+1 dimension implies U=4"):
        bad_call(targets=tg[:, :3])
    with pytest.raises(ValueError, match="targets has batch size 4"):
        bad_call(targets=tg[:4])
    with pytest.raises(ValueError, match="encoder_lengths has 4 entries"):
        bad_call(encoder_lengths=tl[:4])
    with pytest.raises(ValueError, match=r"encoder_lengths\[0\] = 8 exceeds the padded time dimension 7"):
        bad_call(encoder_lengths=torch.tensor([8, 1, 1, 1, 1]))
    with pytest.raises(ValueError, match=r"target_lengths\[2\] = 5 exceeds"):
        bad_call(target_lengths=torch.tensor([0, 0, 5, 0, 0]))
    with pytest.raises(ValueError, match=r"targets\[0, 0\] = 8 equals blank \(blank=8, V=9\)"):
        bad_call(targets=torch.full_like(tg, 8), target_lengths=torch.full((5,), 4))
    with pytest.raises(ValueError, match=r"targets\[0, 0\] = 9 is outside \[0, 9\)"):
        bad_call(targets=torch.full_like(tg, 9), target_lengths=torch.full((5,), 4))
    with pytest.raises(TypeError, match="targets must have dtype"):
        bad_call(targets=tg.float())
    with pytest.raises(ValueError, match="blank must be in"):
        bad_call(blank=9)
    with pytest.raises(ValueError, match="reduction must be one of"):
        bad_call(reduction="avg")
    with pytest.raises(ValueError, match=r"max_chunk_bytes must be a positive number of bytes, float\('inf'\) or None, got 0"):
        bad_call(max_chunk_bytes=0)
    with pytest.raises(ValueError, match="fastemit_lambda must be a finite number >= 0"):
        bad_call(fastemit_lambda=-1.0)
    with pytest.raises(ValueError, match="encoder_out must be non-empty"):
        bad_call(encoder_out=enc[:0])


def test_joint_returning_the_wrong_shape():
    enc, pred, tg, tl, ul = make_batch(seed=21)
    with pytest.raises(ValueError, match=r"joint \(.*<lambda>\) returned \(1, 1, 9\) for inputs of shape \(1, 1, 1, 6\)"):
        bad_call(joint=lambda e, p: (e[..., :1] + p[..., :1]).expand(-1, -1, -1, 9).squeeze(2))
    # right on one node, wrong on a group (does not broadcast over U)
    with pytest.raises(ValueError, match=r"joint \(.*\) returned \(\d+, \d+, 1, 6\) .* expected logits of shape \[\d+, \d+, \d+, 6\]"):
        bad_call(joint=lambda e, p: e + p[:, :, :1, :1], predictor_out=pred[..., :1].expand(-1, -1, 6).contiguous(),
                 max_chunk_bytes=float("inf"), targets=torch.ones_like(tg))
    with pytest.raises(TypeError, match="joint must be a module or callable"):
        bad_call(joint=3)


# ---------------------------------------------------------------------------------------------
# fused=True: the fused output layer (plugin/samplewise_rnnt/fused.py) behind the same function
# ---------------------------------------------------------------------------------------------
def test_fused_true_dispatches_to_the_fused_output_layer():
    from samplewise_rnnt.joints import LinearJoint

    torch.manual_seed(8)
    joint = LinearJoint(6, 5, 12, 9)
    enc, pred, tg, tl, ul = make_batch(seed=22)
    ours = loss_and_grads(lambda e, p: swr.samplewise_rnnt_loss(e, p, joint, tg, tl, ul, fused=True), enc, pred,
                          joint)
    ref = loss_and_grads(lambda e, p: swr.samplewise_rnnt_loss(e, p, joint, tg, tl, ul, fused=False), enc, pred,
                         joint)
    assert_all_close(ours, ref)
    with pytest.raises(ValueError, match="no Linear-act-Linear structure"):
        bad_call(joint=BilinearLogSoftmaxJoint(6, 5, 9), fused=True)


def test_fused_none_picks_the_fused_layer_for_a_linear_joint_only():
    from samplewise_rnnt.joints import LinearJoint

    torch.manual_seed(9)
    joint = LinearJoint(6, 5, 12, 9)
    calls = []
    joint.register_forward_hook(lambda *args: calls.append(1))  # the generic path calls joint(...)
    enc, pred, tg, tl, ul = make_batch(seed=23)
    auto = loss_and_grads(lambda e, p: swr.samplewise_rnnt_loss(e, p, joint, tg, tl, ul), enc, pred, joint)
    assert calls == []  # fused: the joint's forward (the logits) never ran
    generic = loss_and_grads(lambda e, p: swr.samplewise_rnnt_loss(e, p, joint, tg, tl, ul, fused=False), enc, pred,
                             joint)
    assert calls  # the generic path ran the joint
    assert_all_close(auto, generic)
    # a joint without that structure goes the generic way under None
    other = BilinearLogSoftmaxJoint(6, 5, 9)
    swr.samplewise_rnnt_loss(enc, pred, other, tg, tl, ul)
    with pytest.raises(TypeError, match="fused must be None .automatic., True or False, got str 'yes'"):
        bad_call(fused="yes")
