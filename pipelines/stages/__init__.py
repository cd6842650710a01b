"""The analyzer's stages, in the order a timestep goes through them (:mod:`pipelines.analyzer` assembles them):

1. :mod:`~pipelines.stages.sources`: each stream's source task reads its timesteps into its lane;
2. :mod:`~pipelines.stages.batcher`: per-stream lanes -> batches across streams;
3. :mod:`~pipelines.stages.scoring`: the model task, which has each batch scored by
   :mod:`~pipelines.stages.inference` (the model, on its own thread: S_v, S_a, S) and runs
   :mod:`~pipelines.stages.events` (each stream's detector turns S(t) into events) and
   :mod:`~pipelines.stages.zones` (a stream's masks and zones on the model's cells, each zone's events);
4. :mod:`~pipelines.stages.publishing`: what comes out is told: to the outbox, the events-out file, the outputs
   and the terminal;
5. :mod:`~pipelines.stages.outbox`: events, scores, snapshots and statuses wait for the broker, bounded;
6. :mod:`~pipelines.stages.mqtt`: the publisher drains the outbox into the broker (topics: :mod:`~.topics`);

and :mod:`~pipelines.stages.stats` times every stage; :mod:`~pipelines.stages.lifecycle` holds a stream's state in the
analyzer (starting, running, ended, flushed, released) and the transitions between them.
"""
