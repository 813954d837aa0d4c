"""cnnkit's benchmarks: ``perf/`` (speed, memory, overheads, peers, the GPU) and ``accuracy/`` (runs that
train and report errors), both on the one harness in ``harness/``. Scripts run from the repository
root as ``python bench/perf/<name>.py`` or ``python bench/accuracy/<name>.py``."""
