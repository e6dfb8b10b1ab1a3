"""The Celery tasks of ``celery_pipeline.py``: the application, tracked by tasker.

``install(app)`` runs wherever this module is imported — in the pipeline that sends the tasks
and in the workers that execute them — so every execution is a run of stage DAILY, nested
under the run that sent it. Start a worker for them yourself with::

    cd examples && celery -A celery_tasks worker --pool=prefork -c 2 -Q tasker-example
"""

from __future__ import annotations

import os
import time

from celery import Celery

import tasker
from tasker.integrations.celery import install

BROKER = os.environ.get("CELERY_BROKER_URL", "redis://127.0.0.1:6379/0")
QUEUE = os.environ.get("CELERY_QUEUE", "tasker-example")

app = Celery("celery_tasks", broker=BROKER, backend=os.environ.get("CELERY_RESULT_BACKEND", BROKER))
app.conf.update(
    task_default_queue=QUEUE,
    result_expires=3600,
    broker_connection_retry_on_startup=True,
)
install(app, stage="DAILY")


@app.task(name="celery_tasks.refresh_state")
def refresh_state(state: str, counties: int) -> int:
    """Refresh one state's coverage, county by county (the run shows the progress)."""
    if state == "Alaska":
        raise ValueError("Alaska has boroughs, not counties")
    for _ in tasker.track(range(counties), name=f"{state} counties"):
        time.sleep(0.001)
    return counties
