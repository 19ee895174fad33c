"""Activation checkpointing for ESPnet's conformer encoders (both transducer tasks).

At B = 1024 the encoder's saved activations, not the loss, are what exceed one GPU (the recipe's
memory table, recipes/librispeech/espnet/README.md).
:func:`enable_encoder_checkpointing` makes an encoder keep only

* the input of each encoder layer (every layer's activations are recomputed in backward,
  one layer at a time), and
* the input of the convolutional subsampling front end, which is recomputed in backward in
  slices of ``chunk_size`` utterances (its ``[B, C, T/2, F/2]`` convolution outputs are the
  largest tensors of the whole encoder).

Recomputation uses ``torch.utils.checkpoint(use_reentrant=False)``, which restores the RNG state
(the same dropout masks in forward and recomputation) and the autocast state.

* Layers with batch normalisation (task ``asr``'s conformer convolution module; task
  ``asr_transducer`` with ``conv_mod_norm_type: batch_norm``) mix the utterances of a batch:
  they are recomputed for the whole batch, and their running statistics are updated once (by
  the forward, not again by the recomputation). Gradients equal the unchecked encoder's, dropout
  included.
* Layers without batch normalisation (task ``asr_transducer``'s default ``layer_norm``) act on
  each utterance alone: forward and recomputation run in slices of ``chunk_size`` utterances, so
  the memory of a layer's recomputation no longer grows with the batch. Gradients equal the
  unchecked encoder's when dropout is off; with dropout the masks are drawn slice by slice
  (other random numbers than the unchecked encoder draws, from the same distribution).
* With ``sliced_layers``, the attention and feed-forward modules inside a whole-batch layer
  (per-utterance computations, the attention's ``[B, H, T, T]`` tensors among them) are
  checkpointed again in slices of ``chunk_size`` utterances: the whole-batch part of a layer's
  recomputation is then its convolution module alone. Exact with dropout off; with dropout the
  sliced modules draw their masks slice by slice.
* The conv2d front end, whose convolutions act on each utterance alone and hold no dropout, is
  sliced (exact); for ESPnet's ``Conv2dSubsampling*`` the positional encoding (which holds a
  dropout) runs on the whole batch after the sliced convolutions.

Nothing changes in the module tree: the parameters, ``state_dict`` keys and checkpoints are those
of the plain encoder. The forward of each wrapped module is replaced on the instance only.
Checkpointing acts only in training mode with gradients enabled; evaluation and decoding run the
original code.
"""
from __future__ import annotations

import inspect
import logging
from contextlib import contextmanager
from typing import List

import torch
from torch.utils.checkpoint import checkpoint

__all__ = ["enable_encoder_checkpointing", "checkpointed_modules"]

log = logging.getLogger(__name__)

# total time subsampling of ESPnet's Conv2dSubsampling family with out = Sequential(Linear, pos_enc):
# the output mask is x_mask[:, :, ::factor][:, :, :T_out] (checked against the original forward
# in the tests). Other front ends (Conv2dSubsampling8 with its prefix embeddings, ...) are
# checkpointed whole.
_CONV2D_FACTORS = {
    "Conv2dSubsampling": 4,
    "Conv2dSubsampling1": 1,
    "Conv2dSubsampling2": 2,
    "Conv2dSubsampling6": 6,
}


def _active(module: torch.nn.Module) -> bool:
    return module.training and torch.is_grad_enabled()


@contextmanager
def _running_stats_kept(module: torch.nn.Module):
    """Undo the running-statistics update of every batch norm in ``module`` (for recomputation:
    the first forward already updated them, a second update would change the model)."""
    saved = []
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._NormBase) and m.track_running_stats:
            saved.append((m, [b.clone() for b in (m.running_mean, m.running_var, m.num_batches_tracked)
                              if b is not None]))
    try:
        yield
    finally:
        with torch.no_grad():
            for m, bufs in saved:
                live = [b for b in (m.running_mean, m.running_var, m.num_batches_tracked) if b is not None]
                for dst, src in zip(live, bufs):
                    dst.copy_(src)


def _checkpoint_once(module: torch.nn.Module, fn, *args, **kwargs):
    """``checkpoint(fn)`` where the recomputation leaves batch-norm running statistics alone."""
    calls = [0]

    def run(*a, **k):
        calls[0] += 1
        if calls[0] == 1:
            return fn(*a, **k)
        with _running_stats_kept(module):
            return fn(*a, **k)

    return checkpoint(run, *args, use_reentrant=False, **kwargs)


def _wrap_whole(module: torch.nn.Module) -> None:
    """Checkpoint ``module``'s forward for the whole batch."""
    orig = module.forward

    def forward(*args, **kwargs):
        if _active(module):
            return _checkpoint_once(module, orig, *args, **kwargs)
        return orig(*args, **kwargs)

    module.forward = forward
    module._swr_checkpointed = "whole"


def _per_sample_safe(module: torch.nn.Module, allow_dropout: bool = False) -> bool:
    """True when no submodule mixes utterances (batch norm) or, unless allowed, draws random
    numbers (dropout)."""
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._NormBase):
            return False
        if not allow_dropout and isinstance(m, torch.nn.modules.dropout._DropoutNd) and m.p > 0:
            return False
    return True


# layers whose forward acts on each utterance alone when they hold no batch norm
_SLICEABLE_LAYERS = {"EncoderLayer", "Conformer"}


def _sliced(fn, x: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """``fn`` over batch slices of ``x``, each slice checkpointed; outputs concatenated."""
    outs = [checkpoint(fn, x[i:i + chunk_size], use_reentrant=False) for i in range(0, x.shape[0], chunk_size)]
    return outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)


def _wrap_sliced_layer(layer: torch.nn.Module, chunk_size: int, transducer_block: bool) -> None:
    """A per-utterance encoder layer, recomputed in batch slices.

    asr: ``EncoderLayer(x | (x, pos_emb), mask[B, 1, T]) -> (x | (x, pos_emb), mask)``;
    asr_transducer: ``block(x, pos_enc, mask[B, T], chunk_mask=None) -> (x, mask, pos_enc)``.
    ``pos_emb``/``pos_enc`` (batch dimension 1) and ``chunk_mask`` are shared by every slice.
    """
    orig = layer.forward

    if transducer_block:
        def forward(x, pos_enc, mask, chunk_mask=None):
            if not _active(layer) or x.shape[0] <= chunk_size:
                if _active(layer):
                    return _checkpoint_once(layer, orig, x, pos_enc, mask, chunk_mask=chunk_mask)
                return orig(x, pos_enc, mask, chunk_mask=chunk_mask)
            outs = [checkpoint(lambda xs, ms: orig(xs, pos_enc, ms, chunk_mask=chunk_mask)[0],
                               x[i:i + chunk_size], mask[i:i + chunk_size], use_reentrant=False)
                    for i in range(0, x.shape[0], chunk_size)]
            return torch.cat(outs, dim=0), mask, pos_enc
    else:
        def forward(x_input, mask, cache=None):
            x = x_input[0] if isinstance(x_input, tuple) else x_input
            if cache is not None or not _active(layer) or x.shape[0] <= chunk_size:
                if _active(layer) and cache is None:
                    return _checkpoint_once(layer, orig, x_input, mask)
                return orig(x_input, mask, cache)
            pos = x_input[1] if isinstance(x_input, tuple) else None

            def run(xs, ms):
                out, _ = orig((xs, pos) if pos is not None else xs, ms)
                return out[0] if isinstance(out, tuple) else out

            outs = [checkpoint(run, x[i:i + chunk_size], mask[i:i + chunk_size], use_reentrant=False)
                    for i in range(0, x.shape[0], chunk_size)]
            y = torch.cat(outs, dim=0)
            return ((y, pos) if pos is not None else y), mask

    layer.forward = forward
    layer._swr_checkpointed = f"sliced({chunk_size})"


def _wrap_sliced_module(module: torch.nn.Module, chunk_size: int, batch_params) -> None:
    """A per-utterance submodule (attention, feed-forward) checkpointed in batch slices.

    The arguments named in ``batch_params`` are sliced along the batch; the others (relative
    positional encodings, chunk masks) are shared by every slice. The output is one tensor.
    """
    orig = module.forward
    sig = inspect.signature(orig)

    def forward(*args, **kwargs):
        bound = sig.bind(*args, **kwargs)
        names = [n for n in batch_params if isinstance(bound.arguments.get(n), torch.Tensor)]
        B = bound.arguments[names[0]].shape[0] if names else 0
        if not _active(module) or B <= chunk_size:
            return orig(*args, **kwargs)

        def run(*slices):
            call = dict(bound.arguments)
            call.update(zip(names, slices))
            return orig(**call)

        outs = [checkpoint(run, *[bound.arguments[n][i:i + chunk_size] for n in names], use_reentrant=False)
                for i in range(0, B, chunk_size)]
        return torch.cat(outs, dim=0)

    module.forward = forward
    module._swr_checkpointed = f"sliced({chunk_size})"


# per-utterance submodules of the conformer layers of both tasks, and their batch arguments
_SLICEABLE_PARTS = {
    "self_attn": ("query", "key", "value", "mask"),     # asr: EncoderLayer
    "self_att": ("query", "key", "value", "mask"),      # asr_transducer: Conformer
    "feed_forward": ("x",),
    "feed_forward_macaron": ("x",),
}


def _wrap_conv2d_subsampling(embed: torch.nn.Module, chunk_size: int) -> None:
    """ESPnet's Conv2dSubsampling*: conv + linear sliced and checkpointed, pos. encoding whole."""
    orig = embed.forward
    factor = _CONV2D_FACTORS[type(embed).__name__]
    linear, pos_enc = embed.out[0], embed.out[1:]

    def core(x):
        y = embed.conv(x.unsqueeze(1))
        b, c, t, f = y.size()
        return linear(y.transpose(1, 2).contiguous().view(b, t, c * f))

    def forward(x, x_mask):
        if not _active(embed):
            return orig(x, x_mask)
        y = pos_enc(_sliced(core, x, chunk_size))
        if x_mask is None:
            return y, None
        t_out = (y[0] if isinstance(y, tuple) else y).size(1)  # rel. pos. encodings return (x, pos_emb)
        return y, x_mask[:, :, ::factor][:, :, :t_out]

    embed.forward = forward
    embed._swr_checkpointed = f"sliced({chunk_size})"


def _wrap_sliced_pair(embed: torch.nn.Module, chunk_size: int) -> None:
    """A per-utterance front end ``(x, mask) -> (x, mask)`` (asr_transducer's ConvInput): sliced."""
    orig = embed.forward

    def forward(x, mask=None):
        if not _active(embed):
            return orig(x, mask)
        y = _sliced(lambda xs: orig(xs, None)[0], x, chunk_size)
        if mask is not None:
            mask = mask[:, : y.size(1)]  # what ConvInput.forward does with the mask
        return y, mask

    embed.forward = forward
    embed._swr_checkpointed = f"sliced({chunk_size})"


def checkpointed_modules(encoder: torch.nn.Module) -> List[str]:
    """Names of the submodules of ``encoder`` whose forward is checkpointed, with the mode."""
    return [f"{n}:{m._swr_checkpointed}" for n, m in encoder.named_modules() if hasattr(m, "_swr_checkpointed")]


def enable_encoder_checkpointing(encoder: torch.nn.Module, chunk_size: int = 16,
                                 sliced_layers: bool = False) -> List[str]:
    """Turn on activation checkpointing in an ESPnet conformer encoder, in place.

    Args:
        encoder: ``espnet2.asr.encoder.conformer_encoder.ConformerEncoder`` (task ``asr``; also
            the transformer/e-branchformer encoders, which share its ``embed``/``encoders``
            layout) or ``espnet2.asr_transducer.encoder.encoder.Encoder`` (task ``asr_transducer``).
        chunk_size: utterances per recomputed slice of the subsampling front end (and of the
            per-utterance parts of the layers with ``sliced_layers``).
        sliced_layers: also recompute the attention and feed-forward modules of layers that are
            recomputed for the whole batch in slices of ``chunk_size`` utterances (nested
            checkpoints): the batch-wide part of a layer's recomputation shrinks to its
            convolution module. Exact with dropout off; with dropout, the sliced modules draw
            their masks slice by slice.

    Returns:
        the names of the checkpointed submodules (for the log).

    Raises:
        ValueError: for a bad ``chunk_size`` or an encoder without ``embed`` and ``encoders``.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"checkpoint_chunk_size must be a positive integer, got {chunk_size!r}")
    if not hasattr(encoder, "encoders") or not hasattr(encoder, "embed"):
        raise ValueError(
            f"encoder checkpointing supports ESPnet encoders with `embed` and `encoders` "
            f"(conformer); got {type(encoder).__name__}")
    if checkpointed_modules(encoder):
        return checkpointed_modules(encoder)
    # the layers: asr's MultiSequential of EncoderLayer, asr_transducer's MultiBlocks(.blocks)
    transducer = hasattr(encoder.encoders, "blocks")
    layers = encoder.encoders.blocks if transducer else encoder.encoders
    for layer in layers:
        if _per_sample_safe(layer, allow_dropout=True) and type(layer).__name__ in _SLICEABLE_LAYERS:
            _wrap_sliced_layer(layer, chunk_size, transducer)
        else:
            _wrap_whole(layer)
            if sliced_layers:
                for part, params in _SLICEABLE_PARTS.items():
                    sub = getattr(layer, part, None)
                    if isinstance(sub, torch.nn.Module) and _per_sample_safe(sub, allow_dropout=True):
                        _wrap_sliced_module(sub, chunk_size, params)
    embed = encoder.embed
    name = type(embed).__name__
    if (name in _CONV2D_FACTORS and isinstance(getattr(embed, "out", None), torch.nn.Sequential)
            and _per_sample_safe(embed.conv) and _per_sample_safe(embed.out[0])):
        _wrap_conv2d_subsampling(embed, chunk_size)
    elif name == "ConvInput" and _per_sample_safe(embed):
        _wrap_sliced_pair(embed, chunk_size)
    elif isinstance(embed, torch.nn.Module) and any(p.requires_grad for p in embed.parameters()):
        _wrap_whole(embed)
    names = checkpointed_modules(encoder)
    log.info("encoder activation checkpointing: %d modules (%s ...)", len(names), ", ".join(names[:2]))
    return names
