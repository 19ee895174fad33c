"""The benchmarked methods, registered by name in :data:`METHODS`.

Two levels:

* ``logits``: the loss on materialised logits ``[B, T, U+1, V]`` (the input), forward + backward.
* ``joint``: the whole output side of a transducer: ``joint(enc, pred)`` then the loss, forward +
  backward to ``encoder_out``, ``predictor_out`` and the joint's parameters. The inputs are the
  encoder and predictor outputs and the joint.

A method is ``Method(level, make, why_unavailable)``: ``make(inputs, case)`` returns a function that
runs one forward + backward step (and drops the gradients it produced); ``why_unavailable(case)``
returns a reason to skip or ``None``. Adding the fused output layer later takes a few lines::

    def _make_fused(inp, case):
        joint = inp["joint"]
        return _joint_step(inp, lambda e, p: swr.samplewise_rnnt_loss(
            e, p, joint, *inp["labels"], blank=case["blank"], fused=True), case)

    METHODS["fused"] = Method("joint", _make_fused, description="sample-wise, fused output layer")

and naming ``"fused"`` in a preset's ``methods`` (or ``--methods ... fused``).
"""
from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch

import samplewise_rnnt as swr
from samplewise_rnnt.ops import rnnt_loss_and_grad

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def TanhJoint(he, hp, hj, v):
    """The usual transducer joint (ESPnet's JointNetwork, NeMo's RNNTJoint): Linear(enc) + Linear(pred),
    tanh, Linear to V. A samplewise_rnnt.LinearJoint, so that the fused method can run on it too."""
    return swr.LinearJoint(he, hp, hj, v, activation="tanh")


@dataclass
class Method:
    level: str  # "logits" or "joint"
    make: Callable[[dict, dict], Callable[[], None]]
    why_unavailable: Callable[[dict], Optional[str]] = lambda case: None
    max_repeats: Optional[int] = None  # for very slow methods
    description: str = ""


def lengths(case, device):
    """T_b and U_b: every sample full length, except a fraction ``short_frac`` (every other sample for
    0.5) at 3/4 of T and U."""
    B, T, U = case["B"], case["T"], case["U"]
    short = torch.zeros(B, dtype=torch.bool)
    k = int(round(B * case.get("short_frac", 0.0)))
    if k:
        short[torch.linspace(B - 1, 0, k).round().long()] = True  # spread over the batch
    tl = torch.where(short, torch.tensor(max(1, (3 * T) // 4)), torch.tensor(T))
    ul = torch.where(short, torch.tensor((3 * U) // 4), torch.tensor(U))
    return tl.int().to(device), ul.int().to(device)


def build_inputs(case) -> dict:
    """The inputs of one case, built before the memory baseline is taken."""
    g = torch.Generator().manual_seed(case.get("seed", 0))
    device = torch.device(case["device"])
    B, T, U, V = case["B"], case["T"], case["U"], case["V"]
    blank = case["blank"] % V
    labels = torch.tensor([v for v in range(V) if v != blank])
    targets = labels[torch.randint(0, V - 1, (B, U), generator=g)].int().to(device)
    tl, ul = lengths(case, device)
    if case["level"] == "logits":
        dtype = DTYPES[case["dtype"]]
        logits = torch.randn(B, T, U + 1, V, generator=g).to(device=device, dtype=dtype)
        return {"logits": logits, "labels": (targets, tl, ul), "bytes": logits.numel() * logits.element_size()}
    torch.manual_seed(case.get("seed", 0))
    try:  # the package's Linear-tanh-Linear joint (the fused output layer recognises it)
        from samplewise_rnnt.joints import LinearJoint

        joint = LinearJoint(case["He"], case["Hp"], case["Hj"], V + len(case.get("durations") or [])).to(device)
    except ImportError:
        joint = TanhJoint(case["He"], case["Hp"], case["Hj"], V + len(case.get("durations") or [])).to(device)
    enc = torch.randn(B, T, case["He"], generator=g).to(device).requires_grad_(True)
    pred = torch.randn(B, U + 1, case["Hp"], generator=g).to(device).requires_grad_(True)
    nbytes = sum(x.numel() * x.element_size() for x in [enc, pred, *joint.parameters()])
    return {"enc": enc, "pred": pred, "joint": joint, "labels": (targets, tl, ul), "bytes": nbytes}


# ---- logits level ---------------------------------------------------------------------------------------
def _logits_step(inp, loss_fn):
    logits = inp["logits"].requires_grad_(True)

    def step():
        loss_fn(logits, *inp["labels"]).backward()
        logits.grad = None

    return step


def _make_torchaudio(inp, case):
    import torchaudio

    return _logits_step(inp, lambda x, tg, tl, ul: torchaudio.functional.rnnt_loss(x, tg, tl, ul, blank=case["blank"]))


def _make_swr(inp, case):
    return _logits_step(inp, lambda x, tg, tl, ul: swr.rnnt_loss(x, tg, tl, ul, blank=case["blank"]))


def _make_swr_inplace(inp, case):
    logits = inp["logits"]

    def step():  # loss and gradient, the gradient written over the logits (as the engine uses it)
        rnnt_loss_and_grad(logits, *inp["labels"], blank=case["blank"], inplace=True)

    return step


def _make_nemo_numba(inp, case):
    from nemo.collections.asr.parts.numba.rnnt_loss.rnnt_pytorch import RNNTLossNumba

    loss = RNNTLossNumba(blank=case["blank"] % case["V"], reduction="mean")
    return _logits_step(inp, lambda x, tg, tl, ul: loss(x, tg.long(), tl.long(), ul.long()))


def _torchaudio_unavailable(case):
    if importlib.util.find_spec("torchaudio") is None:
        return "torchaudio is not installed"
    if case["level"] == "logits" and case["dtype"] == "bfloat16":
        return "torchaudio's rnnt_loss has no bfloat16 kernel"
    return None


def _nemo_unavailable(case):
    if importlib.util.find_spec("nemo") is None:
        return "NeMo is not installed"
    if case["dtype"] != "float32":
        return "NeMo's numba loss computes in float32 only"
    return None


# ---- joint level ----------------------------------------------------------------------------------------
def _joint_step(inp, loss_fn, case):
    enc, pred, joint = inp["enc"], inp["pred"], inp["joint"]
    params = list(joint.parameters())
    dtype = DTYPES[case["dtype"]]
    autocast = dtype != torch.float32

    def step(meter=None):
        """One training step; with ``meter`` (a procmem.PhaseMeter), cut into the phases "loss" (the
        forward of the loss: for the sample-wise engine the whole group loop) and "backward"."""
        with torch.autocast(enc.device.type, dtype=dtype, enabled=autocast):
            loss = loss_fn(enc, pred)
        if meter is not None:
            meter.cut("loss")
            meter.held = meter.current()
        loss.backward()
        if meter is not None:
            meter.cut("backward")
        for x in [enc, pred, *params]:
            x.grad = None

    return step


def _make_batched(loss_name):
    def make(inp, case):
        import torchaudio

        joint = inp["joint"]
        fn = {"torchaudio": torchaudio.functional.rnnt_loss, "swr": swr.rnnt_loss}[loss_name]

        def loss(e, p):
            logits = joint(e.unsqueeze(2), p.unsqueeze(1))
            if loss_name == "torchaudio" and logits.dtype == torch.bfloat16:
                logits = logits.float()
            return fn(logits, *inp["labels"], blank=case["blank"])

        return _joint_step(inp, loss, case)

    return make


def _make_samplewise(inp, case):
    joint = inp["joint"]
    # fused=False: the generic path (None would pick the fused layer for this joint)
    return _joint_step(inp, lambda e, p: swr.samplewise_rnnt_loss(
        e, p, joint, *inp["labels"], blank=case["blank"], max_chunk_bytes=case.get("max_chunk_bytes"),
        fused=False), case)


def _make_fused(inp, case):
    joint = inp["joint"]
    return _joint_step(inp, lambda e, p: swr.samplewise_rnnt_loss(
        e, p, joint, *inp["labels"], blank=case["blank"], max_chunk_bytes=case.get("max_chunk_bytes"), fused=True),
        case)


def _make_floor(inp, case):
    """The fused output layer's unavoidable work and nothing else: exactly its matrix products, with its
    groups, tile shapes and dtypes (the two projections forward and backward; per tile the logits, their
    recomputation where a sample is cut into several tiles, d W, d bias and d h: the evaluator's own
    ``forward_product`` and ``backward_products``), on fixed random hidden activations. A method's time
    divided by this one's is its distance from the floor."""
    from samplewise_rnnt import engine as E
    from samplewise_rnnt.fused import FusedEvaluator, checked_joint_spec
    from samplewise_rnnt.planner import plan_groups

    joint, enc, pred = inp["joint"], inp["enc"], inp["pred"]
    tg, tl, ul = (x.long() for x in inp["labels"])
    dtype = DTYPES[case["dtype"]]
    spec = checked_joint_spec(joint, enc, pred)
    cfg = E._Cfg(case["blank"] % case["V"], "mean", -1.0, 0.0, case.get("max_chunk_bytes"), case["V"], dtype, True,
                 E._autocast_state(enc.device), frozenset(), None)
    ev = FusedEvaluator(spec, cfg, enc.shape[1], pred.shape[1])
    budget = case.get("max_chunk_bytes") or ev.default_budget(enc.device)
    groups = plan_groups(tl.tolist(), ul.tolist(), ev.node_bytes_grad, budget)
    work = []  # per group: the node counts of its tiles, and whether their logits are computed twice
    for g in groups:
        tiles = E._group_tiles(g, ev.node_bytes_grad, budget)
        work.append(([t.nodes for t in tiles], len(tiles) > 1))
    nmax = max(n for sizes, _ in work for n in sizes)
    hh = torch.randn(nmax, ev.J, dtype=dtype, device=enc.device)
    X = torch.empty(nmax, ev.V, dtype=dtype, device=enc.device)
    dh = torch.empty(nmax, ev.J, dtype=dtype, device=enc.device)
    acc = ev.weight_accumulators(True, True)
    We, Wd = spec.lin_enc.weight.detach(), spec.lin_dec.weight.detach()

    def step():
        with torch.no_grad():
            f = enc.detach().reshape(-1, enc.shape[-1]) @ We.t()  # the projections, forward
            g = pred.detach().reshape(-1, pred.shape[-1]) @ Wd.t()
            for sizes, twice in work:
                for n in sizes:  # the logits of every tile
                    ev.forward_product(hh[:n], X[:n])
                for n in sizes:  # (recomputed,) then d W, d bias and d h: the fused layer's own product calls
                    if twice:
                        ev.forward_product(hh[:n], X[:n])
                    ev.backward_products(X[:n], hh[:n], acc, dh[:n])
            df = torch.randn_like(f)  # the projections, backward (d W and d input of each)
            for x, d, w in ((enc, df, We), (pred, torch.randn_like(g), Wd)):
                d.t() @ x.detach().reshape(-1, x.shape[-1])
                d @ w

    return step


# ---- TDT (joint level; the joint returns V token logits, then one logit per duration) ------------------------
def _make_batched_tdt(inp, case):
    joint = inp["joint"]
    return _joint_step(inp, lambda e, p: swr.tdt_loss(joint(e.unsqueeze(2), p.unsqueeze(1)), *inp["labels"],
                                                      case["durations"], blank=case["blank"]), case)


def _make_samplewise_tdt(fused):
    def make(inp, case):
        joint = inp["joint"]
        return _joint_step(inp, lambda e, p: swr.samplewise_tdt_loss(
            e, p, joint, *inp["labels"], durations=case["durations"], blank=case["blank"],
            max_chunk_bytes=case.get("max_chunk_bytes"), fused=fused), case)

    return make


def _make_tdt_pytorch(inp, case):
    """NeMo's pure-PyTorch TDTLossPytorch (``loss_name: tdt_pytorch``, reduction mean_batch) on the whole
    batch's joint output. It moves its work tensors with ``.cuda()``: a no-op on the CPU here (NeMo has no
    TDT loss that runs on a CPU otherwise)."""
    from nemo.collections.asr.losses.rnnt_pytorch import TDTLossPytorch

    joint = inp["joint"]
    blank = case["blank"] % case["V"]
    loss_fn = TDTLossPytorch(blank=blank, durations=list(case["durations"]), reduction="mean_batch")

    def loss(e, p):
        logits = joint(e.unsqueeze(2), p.unsqueeze(1))
        tg, tl, ul = inp["labels"]
        if logits.is_cuda:
            return loss_fn(logits.float(), tg.long(), tl.long(), ul.long())
        cuda = torch.Tensor.cuda
        torch.Tensor.cuda = lambda self, *a, **k: self
        try:
            return loss_fn(logits.float(), tg.long(), tl.long(), ul.long())
        finally:
            torch.Tensor.cuda = cuda

    return _joint_step(inp, loss, case)


def _tdt_pytorch_unavailable(case):
    if importlib.util.find_spec("nemo") is None:
        return "NeMo is not installed"
    return None


def _fused_unavailable(case):
    if importlib.util.find_spec("samplewise_rnnt.fused") is None:
        return "samplewise_rnnt.fused is not available"
    return None


METHODS: Dict[str, Method] = {
    # logits level: the core op on materialised logits
    "torchaudio": Method("logits", _make_torchaudio, _torchaudio_unavailable,
                         description="torchaudio.functional.rnnt_loss"),
    "swr": Method("logits", _make_swr, description="samplewise_rnnt.rnnt_loss"),
    "swr_inplace": Method("logits", _make_swr_inplace,
                          description="samplewise_rnnt.ops.rnnt_loss_and_grad(inplace=True)"),
    "nemo_numba": Method("logits", _make_nemo_numba, _nemo_unavailable, max_repeats=1,
                         description="NeMo RNNTLossNumba (warprnnt_numba)"),
    # joint level: joint + loss + gradients (the sample-wise engine)
    "batched_torchaudio": Method("joint", _make_batched("torchaudio"), _torchaudio_unavailable,
                                 description="joint on the whole batch + torchaudio rnnt_loss"),
    "batched_swr": Method("joint", _make_batched("swr"), description="joint on the whole batch + samplewise_rnnt.rnnt_loss"),
    "samplewise": Method("joint", _make_samplewise, description="samplewise_rnnt.samplewise_rnnt_loss"),
    "fused": Method("joint", _make_fused, _fused_unavailable,
                    description="samplewise_rnnt.samplewise_rnnt_loss(fused=True): the fused output layer"),
    # TDT (presets with "durations")
    "batched_tdt": Method("joint", _make_batched_tdt, description="joint on the whole batch + samplewise_rnnt.tdt_loss"),
    "samplewise_tdt": Method("joint", _make_samplewise_tdt(False),
                             description="samplewise_rnnt.samplewise_tdt_loss(fused=False)"),
    "fused_tdt": Method("joint", _make_samplewise_tdt(True), _fused_unavailable,
                        description="samplewise_rnnt.samplewise_tdt_loss(fused=True): the fused output layer"),
    "tdt_pytorch": Method("joint", _make_tdt_pytorch, _tdt_pytorch_unavailable, max_repeats=1,
                          description="joint on the whole batch + NeMo's TDTLossPytorch (pure PyTorch loops)"),
    "floor": Method("joint", _make_floor, _fused_unavailable,
                    description="the fused layer's matrix products alone (same tiles and dtypes): the floor"),
}
