"""What else reads the analyzer, besides MQTT's events: Home Assistant discovery (:mod:`~.homeassistant`),
Prometheus (:mod:`~.metrics`) and the live web view (:mod:`~.webui`, served by :mod:`~.web`).

They are :class:`~pipelines.outputs.observers.Observer`\\ s fed by the analyzer, and read its state only through
the narrow, read-only :class:`~pipelines.outputs.observers.AnalyzerView`; none imports the analyzer.
"""
