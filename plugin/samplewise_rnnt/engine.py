"""The sample-wise engine: joint, loss and gradients one sample at a time (Braun et al., 2022).

FIRST VERSION: one sample per step, no planner yet. Exact for every reduction.
"""
from __future__ import annotations

from typing import Callable, List

import torch

from . import _validate as V_
from .ops import rnnt_loss_and_grad
from .reference import reduce_costs

__all__ = ["samplewise_rnnt_loss", "SampleWiseRNNTLoss"]


def _joint_params(joint) -> List[torch.Tensor]:
    if isinstance(joint, torch.nn.Module):
        return [p for p in joint.parameters() if p.requires_grad]
    return []


def _run_samples(enc, pred, joint, params, targets, tl, ul, blank, clamp, fastemit_lambda, weights, want_grad):
    """Per sample: logits, loss and (with want_grad) gradients, accumulated in fp32."""
    B = enc.shape[0]
    costs = torch.empty(B, dtype=torch.float32, device=enc.device)
    g_enc = torch.zeros(enc.shape, dtype=torch.float32, device=enc.device) if want_grad else None
    g_pred = torch.zeros(pred.shape, dtype=torch.float32, device=pred.device) if want_grad else None
    g_par = [torch.zeros(p.shape, dtype=torch.float32, device=p.device) for p in params] if want_grad else None
    T_all, U_all = tl.tolist(), ul.tolist()
    for b in range(B):
        T_b, U_b = T_all[b], U_all[b]
        e = enc[b:b + 1, :T_b].detach().requires_grad_(want_grad)
        p = pred[b:b + 1, :U_b + 1].detach().requires_grad_(want_grad)
        with torch.set_grad_enabled(want_grad):
            logits = joint(e.unsqueeze(2), p.unsqueeze(1))
        if logits.shape[:3] != (1, T_b, U_b + 1):
            raise ValueError(f"joint returned logits of shape {tuple(logits.shape)} for inputs of shape "
                             f"{tuple(e.unsqueeze(2).shape)} and {tuple(p.unsqueeze(1).shape)}; expected "
                             f"[1, {T_b}, {U_b + 1}, V]")
        cost, grad = rnnt_loss_and_grad(logits.detach().contiguous(), targets[b:b + 1, :U_b], tl[b:b + 1],
                                        ul[b:b + 1], blank=blank, clamp=clamp, fastemit_lambda=fastemit_lambda,
                                        compute_grad=want_grad,
                                        grad_scale=weights[b:b + 1] if want_grad else None)
        costs[b] = cost[0]
        if want_grad:
            inputs = [e, p] + params
            grads = torch.autograd.grad(logits, inputs, grad_outputs=grad, allow_unused=True)
            g_enc[b, :T_b] += grads[0][0].float()
            g_pred[b, :U_b + 1] += grads[1][0].float()
            for acc, g in zip(g_par, grads[2:]):
                if g is not None:
                    acc += g.float()
        del logits, grad
    return costs, g_enc, g_pred, g_par


class _SampleWise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, enc, pred, targets, tl, ul, joint, opts, *params):
        blank, reduction, clamp, fastemit_lambda = opts
        want_grad = any(ctx.needs_input_grad[i] for i in (0, 1)) or any(ctx.needs_input_grad[7:])
        B = enc.shape[0]
        scalar = reduction != "none"
        weights = torch.ones(B, dtype=torch.float32, device=enc.device)
        if reduction == "mean":
            weights /= B
        elif reduction == "mean_volume":
            weights /= ul.sum().clamp_min(1).float()
        costs, g_enc, g_pred, g_par = _run_samples(enc, pred, joint, list(params), targets, tl, ul, blank, clamp,
                                                   fastemit_lambda, weights, want_grad and scalar)
        ctx.scalar = scalar
        ctx.joint, ctx.opts = joint, opts
        ctx.enc_dtype, ctx.pred_dtype = enc.dtype, pred.dtype
        ctx.param_dtypes = [p.dtype for p in params]
        if want_grad and scalar:
            ctx.save_for_backward(g_enc, g_pred, *g_par)
        elif want_grad:
            ctx.save_for_backward(enc, pred, targets, tl, ul, *params)
        return reduce_costs(costs, ul, reduction)

    @staticmethod
    def backward(ctx, grad_output):
        if ctx.scalar:
            g_enc, g_pred, *g_par = ctx.saved_tensors
            go = grad_output.float()
            out = [(g_enc * go).to(ctx.enc_dtype), (g_pred * go).to(ctx.pred_dtype)]
            out_par = [g * go for g in g_par]
        else:
            enc, pred, targets, tl, ul, *params = ctx.saved_tensors
            blank, _, clamp, fastemit_lambda = ctx.opts
            _, g_enc, g_pred, g_par = _run_samples(enc, pred, ctx.joint, params, targets, tl, ul, blank, clamp,
                                                   fastemit_lambda, grad_output.float().contiguous(), True)
            out = [g_enc.to(ctx.enc_dtype), g_pred.to(ctx.pred_dtype)]
            out_par = g_par
        out_par = [g.to(dt) for g, dt in zip(out_par, ctx.param_dtypes)]
        return (out[0], out[1], None, None, None, None, None, *out_par)


def samplewise_rnnt_loss(encoder_out, predictor_out, joint: Callable, targets, encoder_lengths, target_lengths,
                         blank=0, reduction="mean", clamp=-1.0, fastemit_lambda=0.0, max_chunk_bytes=None,
                         fused=None):
    """Transducer loss computed sample by sample; equals
    ``rnnt_loss(joint(encoder_out.unsqueeze(2), predictor_out.unsqueeze(1)), ...)`` in value and gradients
    (w.r.t. ``encoder_out`` [B, T, He], ``predictor_out`` [B, U+1, Hp] and the joint's parameters)."""
    V_.check_reduction(reduction)
    V_.check_scalars(clamp, fastemit_lambda)
    V_.check_tensor("encoder_out", encoder_out, 3, V_.FLOAT_DTYPES)
    V_.check_tensor("predictor_out", predictor_out, 3, V_.FLOAT_DTYPES, encoder_out.device)
    B, T, _ = encoder_out.shape
    if predictor_out.shape[0] != B:
        raise ValueError(f"predictor_out has batch size {predictor_out.shape[0]} but encoder_out has {B}")
    U1 = predictor_out.shape[1]
    if U1 < 1:
        raise ValueError(f"predictor_out must have U+1 >= 1 steps, got shape {tuple(predictor_out.shape)}")
    tg, tl, ul = V_.check_lengths_and_targets(targets, encoder_lengths, target_lengths, B, T, U1 - 1, 2 ** 62, -1,
                                              encoder_out.device, length_name="encoder_lengths", check_labels=False)
    if fused:  # the fused output layer (issue 8) plugs in here
        raise NotImplementedError("fused=True: the fused output layer is not available yet")
    params = _joint_params(joint)
    opts = (blank, reduction, float(clamp), float(fastemit_lambda))
    return _SampleWise.apply(encoder_out, predictor_out, tg, tl, ul, joint, opts, *params)


class SampleWiseRNNTLoss(torch.nn.Module):
    """Module form of :func:`samplewise_rnnt_loss`; ``joint`` is registered as a submodule."""

    def __init__(self, joint, blank=0, reduction="mean", clamp=-1.0, fastemit_lambda=0.0, max_chunk_bytes=None):
        super().__init__()
        V_.check_reduction(reduction)
        V_.check_scalars(clamp, fastemit_lambda)
        self.joint = joint
        self.blank, self.reduction, self.clamp, self.fastemit_lambda = blank, reduction, clamp, fastemit_lambda
        self.max_chunk_bytes = max_chunk_bytes

    def forward(self, encoder_out, predictor_out, targets, encoder_lengths, target_lengths):
        return samplewise_rnnt_loss(encoder_out, predictor_out, self.joint, targets, encoder_lengths, target_lengths,
                                    self.blank, self.reduction, self.clamp, self.fastemit_lambda,
                                    self.max_chunk_bytes)
