"""Run ids: random version 4 UUIDs, unique across processes, forks included."""

from __future__ import annotations

import random

__all__ = ["new_run_id", "reseed"]

# Seeded from os.urandom, and seeded again in every forked child (tasker.runtime.recorder's at-fork
# hook calls reseed()): the random module reseeds only its own global instance after a fork,
# and siblings forked from one parent would otherwise draw the same ids. One urandom read per
# fork, instead of one system call per id.
_ids = random.Random()
_VERSION_4 = (0x4 << 76) | (0x2 << 62)
_KEEP = ~((0xF << 76) | (0x3 << 62)) & ((1 << 128) - 1)


def new_run_id() -> str:
    """A random version 4 UUID as text, like str(uuid.uuid4()) without a system call per id
    (one is made on every run start)."""
    # bytes.hex() formats faster than an f-string's :032x (the id is made on every run start).
    h = ((_ids.getrandbits(128) & _KEEP) | _VERSION_4).to_bytes(16, "big").hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def reseed() -> None:
    """Draw a fresh seed from os.urandom (in a forked child)."""
    _ids.seed()
