"""What identifies runs across a Celery message: the sender's run and subtask, in two headers
of the message, and each execution's own run id, which the worker's main process puts in the
request it hands to the pool process (never sent through the broker).
"""

from __future__ import annotations

import collections
import uuid
from typing import Any

from tasker.runtime import context

__all__ = [
    "HEADER_RUN",
    "HEADER_SUBTASK",
    "RUN_ID_KEY",
    "add_headers",
    "new_execution_id",
    "parent_of",
    "redelivered",
    "run_id_for",
]

HEADER_RUN = "tasker_parent_run_id"
HEADER_SUBTASK = "tasker_parent_subtask"
# Set by the worker's main process on each request it receives, read by the process that
# executes it: one id per execution, known to both (never sent through the broker).
RUN_ID_KEY = "tasker_run_id"

# Run ids of executions: uuid5 in this namespace (fixed forever: ids must agree across
# versions, hosts and processes).
RUN_ID_NAMESPACE = uuid.UUID("6d1f3b1e-6c53-5a0f-9b1c-7a3c2f0e4d21")


def add_headers(headers: dict[str, Any]) -> None:
    """The sending side: name the run (and subtask) current in the sending thread."""
    headers.pop(RUN_ID_KEY, None)  # a retry copies its request's headers: a new execution
    if headers.get(HEADER_RUN) is not None:
        return  # a retry (Celery copies the request's headers) or set by the caller: kept
    handoff = context.handoff()
    if handoff is None:
        return
    run_id, subtask = handoff
    headers[HEADER_RUN] = run_id
    if subtask is not None:
        headers[HEADER_SUBTASK] = subtask


def parent_of(request: Any) -> tuple[str | None, int | None]:
    """The run (and subtask) the message names: custom headers are attributes of the request
    (protocol 2), and are also in ``request.headers``."""
    run_id = getattr(request, HEADER_RUN, None)
    subtask = getattr(request, HEADER_SUBTASK, None)
    if run_id is None:
        headers = getattr(request, "headers", None)
        if isinstance(headers, dict):
            run_id = headers.get(HEADER_RUN)
            subtask = headers.get(HEADER_SUBTASK)
    if not isinstance(run_id, str):
        return None, None
    if isinstance(subtask, bool) or not isinstance(subtask, int):
        subtask = None
    return run_id, subtask


def run_id_for(task_id: str, retries: int = 0) -> str:
    """The run id of the execution of Celery task ``task_id`` (an ``AsyncResult.id``) at
    attempt ``retries`` (0 for the first). An execution that is not the first of its attempt
    (a message delivered again, a task replacing itself with ``self.replace()``, a task id
    sent twice) has a random id instead."""
    return str(uuid.uuid5(RUN_ID_NAMESPACE, f"{task_id}/{int(retries)}"))


# Deterministic ids the worker's main process handed out, most recent last: a task id that
# arrives again (sent twice on purpose) gets a random id, never one already used.
_handed_out: collections.OrderedDict[str, None] = collections.OrderedDict()
_HANDED_OUT_KEPT = 10_000


def new_execution_id(task_id: str, request_dict: Any, redelivered: bool) -> str:
    """The id of a new execution: ``run_id_for`` for the first delivery of an attempt."""
    retries = _int(request_dict.get("retries"))
    if redelivered or _int(request_dict.get("replaced_task_nesting")):
        return str(uuid.uuid4())
    run_id = run_id_for(task_id, retries)
    if run_id in _handed_out:
        return str(uuid.uuid4())
    _handed_out[run_id] = None
    if len(_handed_out) > _HANDED_OUT_KEPT:
        _handed_out.popitem(last=False)
    return run_id


def redelivered(request: Any) -> bool:
    info = getattr(request, "delivery_info", None)
    return bool(info.get("redelivered")) if isinstance(info, dict) else False


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0
