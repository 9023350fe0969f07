"""Checkpointed loading: units of work -> sinks, with the run's cursors committed as it goes.

A *unit* is one page (or one change window, or one set of tombstones) of one stream, with the
cursor position the stream reaches once the unit is written. Units flow through the same three
stages as a plain export (extract -> build in a thread -> load), and once any one stream has
``every`` units written since the last checkpoint, or after a unit that ends a boundary, the
loader takes a checkpoint (of every stream: files are shared, so a checkpoint is global):

1. every sink ends its current file and makes it durable (fsync of file and directory);
2. then, in one transaction, the cursor of every stream, the list of durable files and the
   entries gathered since the last checkpoint (ids seen, row hashes) are committed.

So a cursor never names a page whose rows are not on disk, and a file never holds rows past
the cursors it is recorded with. Sinks are only ever touched by one worker thread, which also
lets an interrupted run wait for the write in progress and commit what is complete.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from etl.clients import RetryBudgetExhausted
from etl.load import ResumableSink, WrittenFile
from etl.pipeline.run import RunProgress, first_error
from etl.pipeline.state import RunState

log = logging.getLogger("etl.pipeline")

# Units waiting to be built / written. Exports group pages into units of up to 10k rows, so a
# couple of units already keep both threads busy; more would only hold memory.
UNIT_QUEUE = 2
BUILT_QUEUE = 2
FILES = "checkpoint"  # entries namespace holding the durable files of the last checkpoint
DONE = "done"  # entries namespace: streams read to their end


@dataclass(frozen=True)
class Built:
    """What one unit becomes: table slices to write and run-state entries to commit with it."""

    tables: dict[str, pa.Table]
    entries: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Unit:
    """One unit of ``stream``; ``build`` runs in a worker thread (pure: raw records -> Built)."""

    stream: str
    position: int
    build: Callable[[], Built]
    boundary: bool = False  # commit a checkpoint right after this unit
    pages: int = 1  # API pages it holds (progress counts pages)


class Checkpointer:
    """Writes built units to the sinks and commits checkpoints to the run state."""

    def __init__(
        self,
        state: RunState,
        sinks: dict[str, ResumableSink],
        *,
        every: int,
        positions: dict[str, int] | None = None,
    ) -> None:
        if every < 1:
            raise ValueError("a checkpoint needs at least one unit")
        self.state = state
        self.sinks = sinks
        self.every = every
        self.positions: dict[str, int] = dict(positions or {})
        self.broken: BaseException | None = None
        self._entries: dict[str, dict[str, Any]] = {}
        self._since: Counter[str] = Counter()  # units per stream since the last checkpoint
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="crm-etl-load")

    @property
    def committed(self) -> bool:
        """Whether any stream has a committed cursor (in this attempt or an earlier one)."""
        return bool(self.state.cursors())

    async def write(self, unit: Unit, built: Built) -> None:
        await self._in_thread(self._write, unit, built)

    async def checkpoint(self, *, final: bool = False, done: Iterable[str] = ()) -> None:
        await self._in_thread(self._checkpoint, final, tuple(done))

    async def _in_thread(self, fn: Callable[..., None], *args: Any) -> None:
        await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _write(self, unit: Unit, built: Built) -> None:
        self._check()
        try:
            for name, table in built.tables.items():
                if name in self.sinks and table.num_rows:
                    self.sinks[name].write(table)
        except BaseException as exc:
            self.broken = exc
            raise
        self.positions[unit.stream] = unit.position
        for namespace, items in built.entries.items():
            self._entries.setdefault(namespace, {}).update(items)
        self._since[unit.stream] += 1
        if unit.boundary or self._since[unit.stream] >= self.every:
            self._checkpoint()

    def _checkpoint(self, final: bool = False, done: tuple[str, ...] = ()) -> None:
        self._check()
        try:
            files = [f.as_dict() for s in self.sinks.values() for f in s.checkpoint(final=final)]
            entries = {**self._entries, FILES: {"files": files}}
            if done:
                entries[DONE] = dict.fromkeys(done, True)
            self.state.commit_checkpoint(self.positions, files, entries)
        except BaseException as exc:
            self.broken = exc
            raise
        self._entries = {}
        self._since.clear()

    def _check(self) -> None:
        if self.broken is not None:
            raise RuntimeError("an earlier write failed; the sinks cannot take more") from (
                self.broken
            )

    async def publish(self) -> dict[str, list[WrittenFile]]:
        """Close every sink (their files move into the dataset), on the sinks' own thread."""
        published: dict[str, list[WrittenFile]] = {}

        def close_all() -> None:
            for name, sink in self.sinks.items():
                published[name] = sink.close()

        await self._in_thread(close_all)
        return published

    def close(self) -> None:
        self._executor.shutdown(wait=True)

    def save_progress(self) -> bool:
        """On the way out of a stopped run: wait for the write in progress (it cannot be
        cancelled), then commit a checkpoint of every complete unit. False when a failed write
        makes that unsafe (the last commit stands)."""
        self._executor.shutdown(wait=True)
        if self.broken is not None:
            return False
        try:
            self._checkpoint()
        except Exception:
            log.warning("could not save the last pages; resuming repeats them", exc_info=True)
            return False
        return True


async def pump_units(
    producers: Sequence[AsyncIterator[Unit]],
    checkpointer: Checkpointer,
    progress: RunProgress,
) -> None:
    """Run the producers' units through build (threads) and load (the checkpointer).

    When a producer gives up with :class:`RetryBudgetExhausted`, the others stop, the units
    already read are still built and written, and then the error is raised: the caller's
    checkpoint then keeps every page that was read.
    """
    units: asyncio.Queue[Unit | None] = asyncio.Queue(UNIT_QUEUE)
    built: asyncio.Queue[tuple[Unit, Built] | None] = asyncio.Queue(BUILT_QUEUE)
    stopped: list[RetryBudgetExhausted] = []
    tasks: list[asyncio.Task[None]] = []

    async def produce(source: AsyncIterator[Unit]) -> None:
        try:
            async with contextlib.aclosing(source):  # type: ignore[type-var]
                async for unit in source:
                    progress.pages += unit.pages
                    await units.put(unit)
        except RetryBudgetExhausted as exc:
            stopped.append(exc)
            for task in tasks:
                if task is not asyncio.current_task():
                    task.cancel()

    async def extract() -> None:
        async with asyncio.TaskGroup() as group:
            tasks.extend(group.create_task(produce(p)) for p in producers)
        await units.put(None)

    async def build() -> None:
        while (unit := await units.get()) is not None:
            result = await asyncio.to_thread(unit.build)
            await built.put((unit, result))
        await built.put(None)

    async def load() -> None:
        while (item := await built.get()) is not None:
            await checkpointer.write(*item)
            for name, table in item[1].tables.items():
                if name in checkpointer.sinks:
                    progress.rows[name] += table.num_rows

    try:
        async with asyncio.TaskGroup() as group:
            group.create_task(extract())
            group.create_task(build())
            group.create_task(load())
    except BaseExceptionGroup as group_error:
        raise first_error(group_error) from None
    if stopped:
        raise stopped[0]
