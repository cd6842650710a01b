"""Keeping the model's freed buffers mapped: no page faults on every call (glibc's allocator).

Each model call allocates its working tensors afresh: a few MB at a batch of 8-32 timesteps (the packed input,
its float copy, the differences, the spectrogram). glibc's ``malloc`` gives memory at the top of a heap back
to the kernel when it is freed (and the model's thread allocates from a heap of its own, which it shrinks the
same way), so the next call touches fresh pages: 700 page faults a call at a batch of 8 and 1600 at 32, about
half of the model's CPU time (``benchmarks/model_throughput.py --pairs``). Keeping ``TOP_PAD`` bytes of freed
memory on top of each heap (``M_TOP_PAD``, as ``MALLOC_TOP_PAD_`` would) leaves them mapped for the next call:
no page faults, the same results. The price is resident memory that is not given back: up to ``TOP_PAD`` a heap.

Other C libraries (musl, macOS) are left as they are.
"""

from __future__ import annotations

import ctypes
import logging
import platform

log = logging.getLogger(__name__)

TOP_PAD = 64 << 20  # bytes of freed memory each heap keeps mapped (more than a batch of 64 timesteps needs)
_M_TOP_PAD = -2  # glibc's mallopt parameter number


def keep_freed_memory(pad: int = TOP_PAD) -> bool:
    """Ask glibc to keep ``pad`` bytes of freed memory mapped on top of each heap; False where that is not
    glibc (nothing done)."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        done = bool(ctypes.CDLL(None).mallopt(_M_TOP_PAD, pad))
    except (OSError, AttributeError):
        done = False
    if not done:
        log.debug("glibc's mallopt(M_TOP_PAD) failed: freed model buffers go back to the kernel")
    return done
