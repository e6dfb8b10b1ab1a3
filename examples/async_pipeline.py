"""asyncio: each coroutine is its own run, even when they run concurrently.

python examples/async_pipeline.py
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import tasker


async def pages(source: str, n: int) -> AsyncIterator[str]:
    for i in range(n):
        await asyncio.sleep(0.001)
        yield f"{source}/page-{i}"


@tasker.task(stage="INGEST")
async def fetch(source: str, n: int) -> int:
    fetched = 0
    async with tasker.subtask("Connecting"):
        await asyncio.sleep(0.001)
    async for _page in tasker.track(pages(source, n), total=n, name=f"Fetching {source}"):
        fetched += 1
    return fetched


async def main() -> list[int]:
    counts = await asyncio.gather(fetch("api-a", 20), fetch("api-b", 30), fetch("api-c", 10))
    async with tasker.task("INGEST", "Merge") as run:
        run.update(percent=50, message="merging")
        await asyncio.sleep(0.001)
    return list(counts)


if __name__ == "__main__":
    print(asyncio.run(main()))
    tasker.flush()
