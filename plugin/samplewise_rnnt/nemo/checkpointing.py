"""Activation checkpointing for NeMo's ``ConformerEncoder`` (its layers and its subsampling front end).

At B = 1024 the encoder's saved activations, not the loss, exceed one GPU. With checkpointing each
Conformer layer keeps only its input ``[B, T', d_model]`` between forward and backward and recomputes its
internals during backward; the subsampling front end (whose first convolution works at a quarter or half
of the frame rate with 256 channels, the largest activation of the whole network) is checkpointed per
chunk of ``subsampling_chunk`` utterances, so its recomputation peak is that of one chunk.

Gradients equal those of the unchecked encoder: ``torch.utils.checkpoint`` (non-reentrant) restores the
RNG state for the recomputation (same dropout masks), and BatchNorm running statistics are not updated a
second time by the recomputation. Checkpointing is active only in training with gradients enabled and
without streaming caches; evaluation and decoding run the original code.

Config key (model level, ignored by plain NeMo)::

    model:
      encoder_checkpointing: true            # or a mapping:
      # encoder_checkpointing: {layers: true, subsampling: true, subsampling_chunk: 8}
"""
from __future__ import annotations

import contextlib
import difflib
import types
from typing import Optional

import torch
from torch.utils.checkpoint import checkpoint

__all__ = ["enable_encoder_checkpointing", "disable_encoder_checkpointing", "checkpointing_options"]

_DEFAULTS = {"layers": True, "subsampling": True, "subsampling_chunk": 8}


def plain_container(value):
    """An OmegaConf DictConfig as a plain dict (resolved); anything else as it is."""
    try:
        from omegaconf import DictConfig, OmegaConf

        if isinstance(value, DictConfig):
            return OmegaConf.to_container(value, resolve=True)
    except ImportError:  # pragma: no cover
        pass
    return value


def merge_options(value: dict, defaults: dict, where: str) -> dict:
    """``defaults`` updated with ``value`` (a new dict); an unknown key raises ``ValueError`` naming ``where``,
    the key, the closest valid name and all valid names."""
    out = dict(defaults)
    for key, v in value.items():
        if key not in defaults:
            close = difflib.get_close_matches(str(key), list(defaults), n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"{where}: unknown option '{key}'{hint}; valid options are {sorted(defaults)}")
        out[key] = v
    return out


def checkpointing_options(value, where: str = "model.encoder_checkpointing") -> Optional[dict]:
    """Normalise the config value (``bool`` or mapping) to options, or ``None`` when off."""
    if value is None or value is False:
        return None
    if value is True:
        return dict(_DEFAULTS)
    value = plain_container(value)
    if not isinstance(value, dict):
        raise ValueError(f"{where} must be true, false or a mapping, got {value!r}")
    out = merge_options(value, _DEFAULTS, where)
    for key in ("layers", "subsampling"):
        if not isinstance(out[key], bool):
            raise ValueError(f"{where}.{key} must be true or false, got {out[key]!r}")
    chunk = out["subsampling_chunk"]
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"{where}.subsampling_chunk must be a positive integer, got {chunk!r}")
    if not (out["layers"] or out["subsampling"]):
        return None
    return out


@contextlib.contextmanager
def _frozen_batchnorm_stats(module: torch.nn.Module):
    """Run a recomputation without changing BatchNorm running statistics."""
    saved = []
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats and m.training:
            saved.append((m, [b.detach().clone() if b is not None else None
                              for b in (m.running_mean, m.running_var, m.num_batches_tracked)]))
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (mean, var, num) in saved:
                for buf, old in ((m.running_mean, mean), (m.running_var, var), (m.num_batches_tracked, num)):
                    if buf is not None and old is not None:
                        buf.copy_(old)


def _checkpointed(module, fn, *args, **kwargs):
    """``fn(*args, **kwargs)`` under non-reentrant checkpointing; the recomputation leaves BN stats alone."""
    calls = {"n": 0}

    def run(*a, **k):
        calls["n"] += 1
        if calls["n"] == 1:
            return fn(*a, **k)
        with _frozen_batchnorm_stats(module):
            return fn(*a, **k)

    return checkpoint(run, *args, use_reentrant=False, preserve_rng_state=True, **kwargs)


def _active(module) -> bool:
    return module.training and torch.is_grad_enabled()


def _layer_forward(self, x, att_mask=None, pos_emb=None, pad_mask=None, cache_last_channel=None,
                   cache_last_time=None):
    original = type(self).forward
    if not _active(self) or cache_last_channel is not None or cache_last_time is not None:
        return original(self, x, att_mask=att_mask, pos_emb=pos_emb, pad_mask=pad_mask,
                        cache_last_channel=cache_last_channel, cache_last_time=cache_last_time)
    return _checkpointed(self, lambda x_, am, pe, pm: original(self, x_, att_mask=am, pos_emb=pe, pad_mask=pm),
                         x, att_mask, pos_emb, pad_mask)


def _subsampling_forward(self, x, lengths):
    original = type(self).forward
    if not _active(self):
        return original(self, x, lengths)
    chunk = self._swr_subsampling_chunk
    outs, lens = [], []
    for start in range(0, x.shape[0], chunk):
        xs, ls = x[start:start + chunk], lengths[start:start + chunk]
        y, l_out = _checkpointed(self, lambda a, b: original(self, a, b), xs, ls)
        outs.append(y)
        lens.append(l_out)
    if len(outs) == 1:
        return outs[0], lens[0]
    return torch.cat(outs, 0), torch.cat(lens, 0)


def enable_encoder_checkpointing(encoder: torch.nn.Module, layers: bool = True, subsampling: bool = True,
                                 subsampling_chunk: int = 8) -> torch.nn.Module:
    """Checkpoint a NeMo ``ConformerEncoder``'s layers and/or subsampling front end (in place; idempotent).

    Parameters, buffers and ``state_dict`` are unchanged; only the instances' ``forward`` is rebound.
    Returns the encoder.
    """
    if not hasattr(encoder, "layers") or not hasattr(encoder, "pre_encode"):
        raise ValueError(f"encoder must be a NeMo ConformerEncoder (with .layers and .pre_encode), got "
                         f"{type(encoder).__name__}")
    if isinstance(subsampling_chunk, bool) or not isinstance(subsampling_chunk, int) or subsampling_chunk < 1:
        raise ValueError(f"subsampling_chunk must be a positive integer, got {subsampling_chunk!r}")
    disable_encoder_checkpointing(encoder)
    if layers:
        for layer in encoder.layers:
            layer.forward = types.MethodType(_layer_forward, layer)
    if subsampling and isinstance(encoder.pre_encode, torch.nn.Module) \
            and not isinstance(encoder.pre_encode, torch.nn.Linear):
        encoder.pre_encode._swr_subsampling_chunk = int(subsampling_chunk)
        encoder.pre_encode.forward = types.MethodType(_subsampling_forward, encoder.pre_encode)
    return encoder


def disable_encoder_checkpointing(encoder: torch.nn.Module) -> torch.nn.Module:
    """Undo :func:`enable_encoder_checkpointing`."""
    for m in list(getattr(encoder, "layers", [])) + [getattr(encoder, "pre_encode", None)]:
        if isinstance(m, torch.nn.Module) and "forward" in m.__dict__:
            del m.__dict__["forward"]
    return encoder
