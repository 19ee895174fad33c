"""Tiny NeMo transducer configs and batches shared by the NeMo tests (CPU-sized)."""
from __future__ import annotations

import json
from pathlib import Path

import soundfile as sf
import torch
from omegaconf import OmegaConf

CHARS = [" ", "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r", "s",
         "t", "u", "v", "w", "x", "y", "z", "'"]


def tiny_model_cfg(loss_name="pytorch", labels=None, tokenizer_dir=None, d_model=32, n_layers=2,
                   joint_dropout=0.0, enc_dropout=0.1, train_manifest=None, val_manifest=None, batch_size=4,
                   reduction="mean_batch", fuse_loss_wer=False, extra=None):
    """A 2-layer Conformer transducer (d_model 32, LSTM 32, joint 32): char (labels) or BPE (tokenizer_dir)."""
    H = d_model
    cfg = {
        "sample_rate": 16000,
        "compute_eval_loss": True,
        "log_prediction": False,
        "rnnt_reduction": reduction,
        "model_defaults": {"enc_hidden": H, "pred_hidden": H, "joint_hidden": H},
        "preprocessor": {"_target_": "nemo.collections.asr.modules.AudioToMelSpectrogramPreprocessor",
                         "sample_rate": 16000, "normalize": "per_feature", "window_size": 0.025,
                         "window_stride": 0.01, "features": 40, "n_fft": 512, "dither": 0.0, "pad_to": 0},
        "spec_augment": None,
        "encoder": {"_target_": "nemo.collections.asr.modules.ConformerEncoder", "feat_in": 40, "feat_out": -1,
                    "n_layers": n_layers, "d_model": H, "subsampling": "dw_striding", "subsampling_factor": 4,
                    "subsampling_conv_channels": 16, "ff_expansion_factor": 2, "self_attention_model": "rel_pos",
                    "n_heads": 2, "conv_kernel_size": 9, "conv_norm_type": "batch_norm", "dropout": enc_dropout,
                    "dropout_pre_encoder": enc_dropout, "dropout_emb": 0.0, "dropout_att": enc_dropout},
        "decoder": {"_target_": "nemo.collections.asr.modules.RNNTDecoder", "normalization_mode": None,
                    "random_state_sampling": False, "blank_as_pad": True,
                    "prednet": {"pred_hidden": H, "pred_rnn_layers": 1, "t_max": None, "dropout": 0.0}},
        "joint": {"_target_": "nemo.collections.asr.modules.RNNTJoint", "log_softmax": None,
                  "preserve_memory": False, "fuse_loss_wer": fuse_loss_wer, "fused_batch_size": 2,
                  "jointnet": {"joint_hidden": H, "activation": "relu", "dropout": joint_dropout}},
        "decoding": {"strategy": "greedy_batch", "greedy": {"max_symbols": 5}},
        "loss": {"loss_name": loss_name},
        "optim": {"name": "adamw", "lr": 3e-3, "weight_decay": 0.0},
    }
    if tokenizer_dir is not None:
        cfg["tokenizer"] = {"dir": str(tokenizer_dir), "type": "bpe"}
    else:
        cfg["labels"] = list(labels or CHARS)
    for key, manifest, shuffle in (("train_ds", train_manifest, True), ("validation_ds", val_manifest, False)):
        if manifest is not None:
            ds = {"manifest_filepath": str(manifest), "sample_rate": 16000, "batch_size": batch_size,
                  "shuffle": shuffle, "num_workers": 0, "pin_memory": False}
            if tokenizer_dir is None:
                ds["labels"] = list(labels or CHARS)
            cfg[key] = ds
    if extra:
        cfg.update(extra)
    return OmegaConf.create(cfg)


def load_batch(manifest, tokenize, n=4):
    """The first ``n`` utterances of a NeMo manifest as (signal, signal_len, transcript, transcript_len)."""
    rows = [json.loads(line) for line in Path(manifest).read_text().splitlines()[:n]]
    audios = [torch.tensor(sf.read(r["audio_filepath"], dtype="float32")[0]) for r in rows]
    tokens = [tokenize(r["text"]) for r in rows]
    sig = torch.zeros(len(rows), max(a.numel() for a in audios))
    for i, a in enumerate(audios):
        sig[i, :a.numel()] = a
    tr = torch.zeros(len(rows), max(len(t) for t in tokens), dtype=torch.long)
    for i, t in enumerate(tokens):
        tr[i, :len(t)] = torch.tensor(t)
    return (sig, torch.tensor([a.numel() for a in audios]), tr, torch.tensor([len(t) for t in tokens]))


TDT_DURATIONS = [0, 1, 2, 3]


def tiny_tdt_cfg(loss_name="samplewise_tdt", durations=None, sigma=0.0, kwargs_key=None, **kwargs):
    """:func:`tiny_model_cfg` as a TDT model (NeMo's TDT configs: ``model_defaults.tdt_durations``, the joint's
    ``num_extra_outputs``, ``decoding.model_type: tdt`` with the durations, the loss's ``tdt_kwargs``)."""
    durations = list(durations or TDT_DURATIONS)
    cfg = tiny_model_cfg(loss_name, **kwargs)
    cfg.model_defaults.tdt_durations = durations
    cfg.model_defaults.num_tdt_durations = len(durations)
    cfg.joint.num_extra_outputs = "${model_defaults.num_tdt_durations}"
    cfg.decoding.model_type = "tdt"
    cfg.decoding.durations = "${model_defaults.tdt_durations}"
    cfg.loss[kwargs_key or "tdt_kwargs"] = {"fastemit_lambda": 0.0, "clamp": -1.0,
                                            "durations": "${model_defaults.tdt_durations}", "sigma": sigma,
                                            "omega": 0.0}
    return cfg
