"""An environment variable that changes at every run, written without growing the process.

``os.environ[name] = value`` calls ``setenv()``, and glibc's ``setenv`` keeps every distinct
``NAME=value`` string it was ever given, for good (a pointer it handed out must stay valid),
in a search tree it walks at every call. TASKER_RUN_ID takes a fresh run id at every top-level
run: a program making a million decorated calls kept a million strings (about 95 MB) and each
assignment grew slower (2.5 us at first, 4.3 us after 200,000 runs).

So, on Linux, once a variable has changed a few times (short programs never pay for more),
it is given one buffer of its own through ``putenv()`` — which, unlike ``setenv()``, makes
the caller's string itself part of the environment — and each later value is copied into
that buffer: children started any way at all (``subprocess``, ``os.system``, ``fork``, a C
library's ``posix_spawn``) read it from there. ``os.environ``'s own mapping, which Python
code reads and ``env={**os.environ}`` copies, is updated to match without a system call.

If anything else sets or removes the variable through ``os.environ`` meanwhile, the buffer
is no longer in the environment: that is seen at the next write (the mapping no longer
holds the value written last) and the buffer is put back. A value that does not fit the
buffer, or cannot be encoded, is assigned the ordinary way.

Only one thread writes each variable (see tasker.runtime.context): the buffer needs no lock.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["Variable"]

# Assignments made the ordinary way before the variable gets its buffer: a program that
# starts a few runs keeps a few strings, and never loads ctypes.
ORDINARY_WRITES = 32
# Room for the value: a run id is 36 characters; anything longer is assigned the ordinary way.
CAPACITY = 80


class _Written(bytes):
    """A value as this module writes it into os.environ's mapping when it must be told
    apart from any value assigned another way: b"" is one shared object, this is not."""


_EMPTY = _Written()
_NOT_WRITTEN = _Written(b"(not written in place)")  # in no mapping: the buffer goes in


class Variable:
    """One environment variable, assigned with :meth:`set`."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._writes = 0
        # Set once the buffer cannot be made or used here: never tried again.
        self._ordinary_only = False
        # Once the buffer is made: a byte view of it, where the value starts in it, os.environ's
        # mapping, the name as that mapping holds it, and what puts the buffer in the
        # environment (the C library's putenv).
        self._fast: tuple[memoryview, int, dict[bytes, bytes], bytes, Callable[[], None]] | None
        self._fast = None
        self._last: bytes = _NOT_WRITTEN  # the mapping's value as written here last

    def set(self, value: str) -> None:
        """Assign ``value`` (asked at every top-level run's start and end: the common case
        is a copy into the buffer and one dictionary assignment)."""
        fast = self._fast
        if fast is None:
            self._writes += 1
            if self._ordinary_only or self._writes <= ORDINARY_WRITES:
                os.environ[self.name] = value
                return
            fast = self._make_buffer()
            if fast is None:
                self._ordinary_only = True
                os.environ[self.name] = value
                return
        view, start, mapping, key, attach = fast
        if value:
            try:
                # What os.environ's own encoding (UTF-8, surrogateescape; checked when the
                # buffer was made) gives for any text UTF-8 takes as it is.
                data = value.encode()
            except UnicodeError:
                self._ordinary(value)
                return
            n = len(data)
            if n >= CAPACITY or 0 in data:  # (an int: a byte search, not a substring's)
                self._ordinary(value)
                return
            view[start : start + n] = data
            view[start + n] = 0
        else:
            data = _EMPTY
            view[start] = 0
        if mapping.get(key) is not self._last:
            # Never written in place yet, or assigned or removed another way since: the
            # environment holds some other string (or none). Put the buffer (back) in.
            try:
                attach()
            except Exception:  # the C library refused: the ordinary way from now on
                self._fast, self._ordinary_only = None, True
                self._ordinary(value)
                return
        mapping[key] = data
        self._last = data

    def _ordinary(self, value: str) -> None:
        """Assign ``value`` through os.environ (which raises its own error for one it cannot
        take): the buffer is out of the environment until the next write in place."""
        os.environ[self.name] = value
        self._last = _NOT_WRITTEN

    def _make_buffer(
        self,
    ) -> tuple[memoryview, int, dict[bytes, bytes], bytes, Callable[[], None]] | None:
        """Make the variable's buffer; None where the in-place write cannot be used (not
        Linux, not CPython's os.environ, an encoding other than UTF-8, no C library)."""
        environ = os.environ
        mapping = getattr(environ, "_data", None)
        if (
            not sys.platform.startswith("linux")
            or not isinstance(mapping, dict)
            or sys.getfilesystemencoding().lower().replace("-", "") != "utf8"
        ):
            return None
        try:
            import ctypes

            putenv = ctypes.CDLL(None).putenv
            putenv.argtypes = [ctypes.c_char_p]
            putenv.restype = ctypes.c_int
            key = os.fsencode(self.name)  # as os.environ encodes its keys on POSIX
            prefix = key + b"="
            buffer = ctypes.create_string_buffer(len(prefix) + CAPACITY)
            view = memoryview(buffer).cast("B")
            view[: len(prefix)] = prefix
        except Exception:  # no ctypes, no C library: the ordinary way, then
            return None
        # Kept for the life of the process: the environment points into it.
        _kept.append(buffer)

        def attach() -> None:
            if putenv(buffer) != 0:
                raise OSError(f"putenv({self.name}) failed")

        self._fast = (view, len(prefix), mapping, key, attach)
        return self._fast


# Every buffer ever handed to putenv(): never freed while the environment may point to it.
_kept: list[Any] = []
