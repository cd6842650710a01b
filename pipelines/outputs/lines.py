"""``--events-out FILE.jsonl``: each event message appended as one whole line, whatever the disk does.

The file is opened for appending, unbuffered: a line goes in with one write or not at all (a short write, on a
disk that fills up mid-line, is cut off again), so the file never holds half a message. A line that cannot be
written (a full disk, a file system gone read-only) is lost from the file only: the message is published as
ever. One warning line per cause (a disk about full takes some lines and not others: no line each time), and at
the end one saying how many lines were lost.
"""

from __future__ import annotations

import errno
import logging
import os
from pathlib import Path

log = logging.getLogger("streamer")


class AppendedLines:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._told: set[str] = set()  # the causes of failed writes, said once each
        self.lost = 0  # lines not written, in all

    def write(self, line: str) -> bool:
        """Append ``line`` (without its newline); whether it went in."""
        if self._fd < 0:
            return False  # closed
        data = line.encode() + b"\n"
        try:
            written = os.write(self._fd, data)
            if written != len(data):  # no half line: a reader of the file sees whole messages only
                os.ftruncate(self._fd, os.fstat(self._fd).st_size - written)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        except OSError as exc:
            self.lost += 1
            why = (exc.strerror or str(exc)).lower()
            if why not in self._told:
                self._told.add(why)
                log.warning("events-out %s: cannot write (%s): events go on over MQTT; lines are lost from the file "
                            "while it cannot be written", self.path, why)  # fmt: skip
            return False
        return True

    def close(self) -> None:
        if self._fd < 0:
            return
        os.close(self._fd)
        self._fd = -1
        if self.lost:
            log.warning("events-out %s: %d line(s) could not be written", self.path, self.lost)
