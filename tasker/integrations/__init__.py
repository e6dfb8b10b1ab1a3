"""Optional integrations with task engines, each behind its own extra.

- :mod:`tasker.integrations.ray` (extra ``ray``): Ray remote functions whose calls report into
  the run that made them.
- :mod:`tasker.integrations.celery` (extra ``celery``): every Celery task execution is a run,
  nested under the run that sent it.

Nothing here is imported by ``import tasker``: each integration is imported only by the
programs that use it, and imports its engine only when used.
"""

from __future__ import annotations

__all__: list[str] = []
