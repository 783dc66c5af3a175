"""Console progress of a suite run: a heading per phase, its progress bars, and the time each phase took."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Phase:
    """The bars of one phase, by key; every bar counts one unit (gradients, images, queries, steps)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.tasks: dict[str, TaskID] = {}

    def add(self, key: str, description: str, total: int, unit: str) -> None:
        self.tasks[key] = self.progress.add_task(description, total=max(total, 1), unit=unit, status="")

    def advance(self, key: str, n: int, description: str | None = None) -> None:
        self.progress.update(self.tasks[key], advance=n, **({} if description is None else
                                                             {"description": description}))

    def update(self, key: str, completed: int | None = None, description: str | None = None,
               status: str | None = None) -> None:
        fields = {k: v for k, v in (("completed", completed), ("description", description), ("status", status))
                  if v is not None}
        self.progress.update(self.tasks[key], **fields)

    def finish(self, key: str) -> None:
        task = self.tasks[key]
        self.progress.update(task, completed=self.progress.tasks[task].total)


class SuiteProgress:
    """``with progress.phase("title") as phase: phase.add(...)``; ``seconds`` holds each finished phase's time."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.seconds: dict[str, float] = {}

    @contextmanager
    def phase(self, key: str, title: str) -> Iterator[Phase]:
        self.console.rule(f"[bold]{title}", align="left")
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("{task.fields[unit]}"), TextColumn("{task.fields[status]}"), TimeElapsedColumn(),
                   TextColumn("ETA"), TimeRemainingColumn()]
        start = time.perf_counter()
        with Progress(*columns, console=self.console, transient=False) as progress:
            yield Phase(progress)
        self.seconds[key] = round(time.perf_counter() - start, 1)
        self.console.print(f"{title}: {self.seconds[key]:.0f} s", style="dim")
