"""``streamer cluster``'s own settings: declared once here, flags of the command line only.

``cluster run`` reads the analyzer's settings as ``streamer run`` does (the config file and its flags,
:mod:`pipelines.config`); what it takes besides (which Ray cluster, how many workers a node runs, what each
reserves, how often they checkpoint) is declared here with :func:`~streamer.settings.setting`. The flags are built
from these declarations (:func:`pipelines.flags.add_setting_flags`) and read back into :class:`ClusterOptions`
(:func:`~pipelines.flags.values_from`: a flag not given leaves the default here), which the driver
(:class:`~pipelines.cluster.driver.ClusterDriver`) and its workers (:class:`~pipelines.cluster.worker.StreamWorker`)
take. They are not config file keys (``file=False``: the config describes the streams, not where Ray runs them),
so ``docs/settings.md`` does not list them: ``--help`` does.

Light (no Ray): ``streamer --help`` builds the flags from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.config import AnalyzerConfig
from streamer.settings import (
    CLUSTER_ADMIN,
    IN_PROCESS,
    boolean,
    command_setting,
    integer,
    number,
    settings_of,
    string,
)

RUN = frozenset({"cluster run"})
FIND = RUN | CLUSTER_ADMIN  # the commands that reach a Ray cluster
EXCLUSIVE = ("address", "local")  # a Ray cluster to reach, or one to start here: not both


@dataclass(frozen=True, kw_only=True)
class ClusterOptions:
    """Where the cluster runs and how its workers are laid out (``cluster run``; ``status`` and ``stop`` take
    ``address``)."""

    address: str = command_setting(
        "auto",
        FIND,
        check=string,
        help="the Ray cluster: auto (the local one started by `ray start`), HOST:PORT, or ray://HOST:10001",
    )
    local: int | None = command_setting(
        None, RUN, check=integer(1, 256), metavar="N", help="start a Ray on this machine with N workers"
    )
    workers_per_node: int = command_setting(
        1, RUN, check=integer(1, 256), metavar="N", help="analyzer workers per node"
    )
    worker_cpus: float = command_setting(1.0, RUN, check=number(0, lo_open=True), metavar="C",
                                         help="CPUs Ray reserves per worker; also its weight in placement")  # fmt: skip
    detach: bool = command_setting(False, RUN, check=boolean, help="exit once the streams are placed; workers go on")
    checkpoint_s: float = command_setting(5.0, RUN, check=number(0, lo_open=True), unit="s",
                                          help="time between checkpoints of each stream's model state")  # fmt: skip

    @property
    def workers_each_node(self) -> int:
        """``--local N``: N workers on this machine's one node."""
        return self.local or self.workers_per_node

    @property
    def detached(self) -> bool:
        """A local Ray ends with its driver: there is nothing to leave running."""
        return self.detach and self.local is None


# The settings only an analyzer of its own process honours (endpoints, an events file, a duration): a cluster's
# workers are built without them, and a change of them is not worth a restart.
UNUSED_BY_WORKERS = frozenset(s.name for s in settings_of(AnalyzerConfig) if s.commands == IN_PROCESS)
