"""pipelines: the commands and asyncio stages built on :mod:`streamer` (CLI, probe; later run, events, MQTT)."""
