"""Benchmarks users run: ``streamer bench latency``, ``capacity`` and ``throughput``.

Their settings (flags, help and defaults) are declared in :mod:`pipelines.bench.options`, which stays light: the
command line imports it to build its parser. The benchmarks themselves are the other submodules.
"""
