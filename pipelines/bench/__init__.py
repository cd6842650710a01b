"""Benchmarks users run: `streamer bench latency` and `streamer bench throughput`."""
