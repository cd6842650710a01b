"""pipelines: the commands and asyncio stages built on :mod:`streamer`: the CLI, probe, the analyzer (batcher,
inference, events, MQTT), benchmarks (:mod:`pipelines.bench`) and learning from labels (:mod:`pipelines.learn`)."""
