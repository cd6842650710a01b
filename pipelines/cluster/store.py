"""What outlives a worker process and the driver: kept in the Ray cluster's own key-value store (its GCS, on the
head node), under the cluster's namespace.

* ``assign/<worker>``: the streams a worker holds (their configs, pickled); a restarted worker reads it and
  resumes them, so a worker process that dies comes back with its streams whether or not a driver is running;
* ``state/<stream>``: the stream's last checkpoint (model baselines and previous frame, a few tens of kB, and its
  open event), written by its worker every few seconds; a stream moved to another worker starts from it.

These hold the streams' configs, credentials in source URLs included: as safe as the cluster itself.
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from typing import Any

from pipelines.config import StreamConfig


class Store:
    def __init__(self, namespace: str) -> None:
        from ray.experimental import internal_kv

        self._kv = internal_kv
        self.namespace = namespace

    def _put(self, key: str, value: bytes) -> None:
        self._kv._internal_kv_put(key, value, overwrite=True, namespace=self.namespace)

    def _get(self, key: str) -> bytes | None:
        value: Any = self._kv._internal_kv_get(key, namespace=self.namespace)
        return value if isinstance(value, bytes) else None

    def assignment(self, worker: str) -> list[StreamConfig]:
        data = self._get(f"assign/{worker}")
        return list(pickle.loads(data)) if data else []

    def set_assignment(self, worker: str, streams: Sequence[StreamConfig]) -> None:
        self._put(f"assign/{worker}", pickle.dumps(tuple(streams)))

    def state(self, stream_id: str) -> dict[str, Any] | None:
        data = self._get(f"state/{stream_id}")
        return pickle.loads(data) if data else None

    def set_states(self, states: dict[str, dict[str, Any]]) -> None:
        for stream_id, state in states.items():
            self._put(f"state/{stream_id}", pickle.dumps(state))

    def clear(self) -> None:
        for prefix in ("assign/", "state/"):
            for key in self._kv._internal_kv_list(prefix, namespace=self.namespace):
                self._kv._internal_kv_del(key, namespace=self.namespace)
