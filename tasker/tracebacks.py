"""The traceback text a run records: the user's frames, without tasker's own.

A failing ``@task`` function's traceback otherwise begins with tasker's wrappers (and a
``track()`` loop over a failing iterable puts tasker's frame in the middle): noise that
hides where the user's code failed. Only the recorded text is filtered; the exception, and
its ``__traceback__``, reach the user's code unchanged.
"""

from __future__ import annotations

import functools
import os
import traceback

__all__ = ["format_exception", "is_tasker_file"]

# The package's folder, links resolved, case folded where the file system folds it.
_PACKAGE = os.path.normcase(os.path.realpath(os.path.dirname(os.path.abspath(__file__))))


@functools.lru_cache(maxsize=512)
def is_tasker_file(filename: str) -> bool:
    """Is ``filename`` (a code object's file) a module of the tasker package?"""
    if not filename or filename.startswith("<"):  # "<string>", "<frozen ...>": not ours
        return False
    path = os.path.normcase(os.path.realpath(os.path.abspath(filename)))
    return path.startswith(_PACKAGE + os.sep)


def _without_tasker_frames(stack: traceback.StackSummary) -> traceback.StackSummary:
    kept = [frame for frame in stack if not is_tasker_file(frame.filename)]
    # Raised inside tasker with no user frame at all: the whole stack is the only clue.
    if not kept:
        return stack
    return traceback.StackSummary.from_list(kept)


def format_exception(exc: BaseException) -> str:
    """``exc`` formatted as Python prints it (header, chained and grouped exceptions, the
    exception line), with the frames of tasker's own code left out of every stack; a stack
    that has nothing but tasker frames is kept whole."""
    top = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    # Iterative, with a seen set: chains can be long, and __context__ can loop back.
    pending = [top]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        current.stack = _without_tasker_frames(current.stack)
        for linked in (current.__cause__, current.__context__):
            if linked is not None:
                pending.append(linked)
        pending.extend(getattr(current, "exceptions", None) or ())
    return "".join(top.format())
