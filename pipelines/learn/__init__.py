"""Learn and measure on labeled recordings: ``streamer calibrate``, ``streamer train`` and ``streamer evaluate``.

:mod:`~pipelines.learn.labels` (the labels file), :mod:`~pipelines.learn.extract` (S_v, S_a and the raw features
of every timestep, by the run-time model), :mod:`~pipelines.learn.metrics` (event-level precision, recall and F1,
timestep accuracy, ROC-AUC), :mod:`~pipelines.learn.calibrate` (alpha, beta and the threshold for the best event
F1), :mod:`~pipelines.learn.train` (the learned fusion heads of :mod:`models.heads`), :mod:`~pipelines.learn.report`
(tables, JSON, the precision-recall plot) and :mod:`~pipelines.learn.commands` (the three commands).
"""
