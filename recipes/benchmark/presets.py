"""Named benchmark configurations: which methods, on which shapes, per device.

Each preset gives ``methods`` (the first is the baseline of the ratio columns), ``shapes`` per device
(a list of dicts; missing keys come from ``common``) and a description.
"""
from __future__ import annotations

# the core op: NeMo's blank is the last class, so every method uses blank = V - 1 here
CORE = {
    "description": "the core op on materialised logits, forward + backward, blank = V-1 (NeMo's convention)",
    "level": "logits",
    "methods": ["torchaudio", "swr", "swr_inplace", "nemo_numba"],
    "common": {"T": 200, "U": 50, "V": 512, "blank": -1, "short_frac": 0.0},
    "shapes": {"cpu": [{"B": 16}], "cuda": [{"B": 16}, {"B": 64}]},
}

# the sample-wise engine: B = 32, half the samples at 3/4 length (the README's table)
ENGINE = {
    "description": "joint + loss + gradients, batched (materialised logits) vs sample-wise; half the samples at "
                   "3/4 length",
    "level": "joint",
    "methods": ["batched_swr", "batched_torchaudio", "samplewise"],
    "common": {"T": 200, "U": 40, "V": 1024, "Hj": 320, "He": 512, "Hp": 320, "blank": 0, "short_frac": 0.5},
    "shapes": {"cpu": [{"B": 32}], "cuda": [{"B": 32}, {"B": 128}]},
}

# peak memory against B (the plot)
SWEEP = {
    "description": "the engine preset's shape at growing B (peak memory against B)",
    "level": "joint",
    "methods": ["batched_swr", "samplewise"],
    "common": dict(ENGINE["common"]),
    "shapes": {"cpu": [{"B": b} for b in (1, 2, 4, 8, 16, 32)],
               "cuda": [{"B": b} for b in (1, 4, 16, 64, 128, 256)]},
    "repeats": 1,
}

# the paper's headline (Braun et al. 2022): B = 1024, 40 s of audio (T = 1000 frames of 40 ms), U = 160,
# V = 1024, joint 640, encoder 512; on the CPU at reduced B
PAPER = {
    "description": "the paper's headline configuration (B=1024, T=1000, U=160, V=1024, joint 640, encoder 512); "
                   "the CPU runs it at reduced B",
    "level": "joint",
    "methods": ["batched_swr", "samplewise"],
    "common": {"T": 1000, "U": 160, "V": 1024, "Hj": 640, "He": 512, "Hp": 640, "blank": 0, "short_frac": 0.0},
    "shapes": {"cpu": [{"B": 1, "methods": ["batched_swr", "samplewise"]}, {"B": 2, "methods": ["samplewise"]},
                       {"B": 4, "methods": ["samplewise"]}],
               # batched where its logits fit: B = 32 is about 90 GB in fp32 (logits, their gradient and the
               # joint's hidden layer), within an H200's 141 GB; sample-wise and fused at the full B
               "cuda": [{"B": 8, "methods": ["batched_swr", "samplewise"]},
                        {"B": 1024, "methods": ["samplewise", "fused"]},
                        {"B": 32, "methods": ["batched_swr"]}]},
    "repeats": 1,
    "full": {"B": 1024},
}

# make demo: the memory story in about a minute on 2 cores (a smaller lattice than `sweep`); B = 256 for the
# sample-wise methods only (the batched step would take 3 GiB there), to show their peak flat in B once their
# group budget is full
DEMO = {
    "description": "make demo: batched vs sample-wise vs fused at growing B (T=100, U=20, V=512, joint 256)",
    "level": "joint",
    "methods": ["batched_swr", "samplewise", "fused"],
    "common": {"T": 100, "U": 20, "V": 512, "Hj": 256, "He": 256, "Hp": 256, "blank": 0, "short_frac": 0.5},
    "shapes": {"cpu": [{"B": b} for b in (1, 4, 16, 64)] + [{"B": 256, "methods": ["samplewise", "fused"]}],
               "cuda": [{"B": b} for b in (1, 16, 64, 256)]},
    "repeats": 1,
}

# the sample-wise engine's group budget: time and peak against max_chunk_bytes, the default last
# (on CUDA min(free memory / 8, 2 GiB): samplewise_rnnt.planner.default_budget)
BUDGET = {
    "description": "the engine preset's shape, sample-wise, at growing max_chunk_bytes (the default last)",
    "level": "joint",
    "methods": ["samplewise"],
    "common": dict(ENGINE["common"]),
    "shapes": {"cpu": [{"B": 16, "max_chunk_bytes": 2 ** k} for k in (24, 26, 28)] + [{"B": 16, "max_chunk_bytes": None}],
               "cuda": [{"B": 128, "max_chunk_bytes": 2 ** k} for k in (26, 28, 30, 31, 32, 34)]
                    + [{"B": 128, "max_chunk_bytes": None}]},
}

# the paper's shape on the CPU for the memory fit: fresh process per (method, B), every step cut into phases
# (the loss's forward, i.e. the whole group loop, and the backward); the phases fitted over B = 1..16
# predict B = 1024, checked against a measured B = 32
PAPERFIT = {
    "description": "the paper's configuration at B = 1..16 and 32, sample-wise and fused, phase-wise memory fit "
                   "predicting B=1024",
    "level": "joint",
    "methods": ["samplewise", "fused"],
    "common": dict(PAPER["common"]),
    "shapes": {"cpu": [{"B": b} for b in (1, 2, 4, 8, 16, 32)], "cuda": [{"B": b} for b in (1, 2, 4, 8, 16, 32)]},
    "repeats": 1,
    "phases": True,
    "fit": {"fit_B": [1, 2, 4, 8, 16], "check_B": 32, "target_B": 1024},
}

# TDT (NeMo's Parakeet / FastConformer-TDT loss): the engine preset's shape with durations [0, 1, 2, 3, 4]
# (the joint returns V + 5 logits per node), NeMo's blank (the last token class), time and peak against B;
# NeMo's pure-PyTorch TDTLossPytorch (Python loops over every node: minutes per step) at B = 1 only
TDT = {
    "description": "TDT: joint + loss + gradients, batched (tdt_loss) vs sample-wise vs fused, durations [0, 1, 2, "
                   "3, 4]; half the samples at 3/4 length",
    "level": "joint",
    "methods": ["batched_tdt", "samplewise_tdt", "fused_tdt"],
    "common": {"T": 200, "U": 40, "V": 1024, "Hj": 320, "He": 512, "Hp": 320, "blank": -1, "short_frac": 0.5,
               "durations": [0, 1, 2, 3, 4]},
    "shapes": {"cpu": [{"B": 1, "methods": ["batched_tdt", "samplewise_tdt", "fused_tdt", "tdt_pytorch"]}]
                      + [{"B": b} for b in (2, 4, 8, 16, 32)],
               "cuda": [{"B": b} for b in (1, 4, 16, 64, 128)]},
    "repeats": 1,
}

PRESETS = {"core": CORE, "tdt": TDT, "budget": BUDGET, "engine": ENGINE, "sweep": SWEEP, "paper": PAPER, "paperfit": PAPERFIT, "demo": DEMO}
