"""Benchmark CLI of samplewise-rnnt: time and peak memory of RNN-T loss computations.

    python -m recipes.benchmark --preset {core,engine,paper,sweep} [--device cpu|cuda]
        [--dtype float32|bfloat16|float16] [--repeats N] [--plot out.png] [--save results.md]

Every (method, shape) case runs in a fresh subprocess (:mod:`recipes.benchmark.runner`): on the CPU the
peak memory growth is the process's peak RSS (VmHWM, the quantity ru_maxrss reports, reset through
/proc/self/clear_refs when the kernel allows) over its RSS once the inputs are built; on CUDA it is
``torch.cuda.max_memory_allocated`` over the memory allocated once the inputs are built.
Methods live in :data:`recipes.benchmark.methods.METHODS` (add one with a few lines), presets in
:data:`recipes.benchmark.presets.PRESETS`.
"""
