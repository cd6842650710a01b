"""``streamer cluster``: the streams of one config spread over analyzer workers on a Ray cluster.

* :mod:`.options`: the command's own settings (the Ray cluster, workers per node, their CPUs, checkpoints);
* :mod:`.placement`: which worker takes which stream (balanced by decode cost, sticky);
* :mod:`.store`: what survives a worker or a driver (assignments, model checkpoints) in Ray's key-value store;
* :mod:`.worker`: the worker, a Ray actor running today's analyzer on its shard of the streams;
* :mod:`.driver`: places streams, watches workers and nodes, moves the streams of a lost node, publishes the
  cluster's layout on ``{prefix}/cluster``.

Ray is an optional extra (``pip install -e '.[cluster]'``): nothing here imports it at module level.
"""
