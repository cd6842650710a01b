"""The command-line front: ``streamer`` (:mod:`~.main`: the commands and their flags), ``demo``, ``probe``, and what
the terminal shows (:mod:`~.terminal`, :mod:`~.display`). Nothing here imports torch at start-up."""
