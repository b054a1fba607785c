"""Progress bars on stderr (rich) for crawls, index builds and batch jobs.

Quiet when stderr is not a terminal or with --quiet, so cron mail and pipes stay clean."""
from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn,
                           TimeRemainingColumn)


class Bars:
    """Context manager giving callbacks for Engine.crawl(progress=), Engine.index(progress=) and run_jobs."""

    def __init__(self, quiet: bool = False, stream=None):
        stream = stream or sys.stderr
        self.enabled = not quiet and stream.isatty()
        self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                  MofNCompleteColumn(), TextColumn("{task.fields[rate]}"), TimeElapsedColumn(),
                                  TextColumn("ETA"), TimeRemainingColumn(),
                                  console=Console(file=stream), transient=False) if self.enabled else None
        self._tasks: dict[str, int] = {}

    def __enter__(self) -> "Bars":
        if self._progress:
            self._progress.start()
        return self

    def __exit__(self, *exc) -> None:
        if self._progress:
            self._progress.stop()

    def _task(self, key: str, description: str, total: float | None):
        if key not in self._tasks:
            self._tasks[key] = self._progress.add_task(description, total=total, rate="")
        return self._tasks[key]

    def crawl(self, counts: dict, name: str = "crawl") -> None:
        """Running crawl counts: fetched pages (total unknown: no ETA), with new/changed and the rate."""
        if not self._progress:
            return
        task = self._task(f"crawl:{name}", f"crawl {name}", None)
        t = self._progress.tasks[task]
        rate = counts.get("fetched", 0) / t.elapsed if t.elapsed else 0.0
        self._progress.update(task, completed=counts.get("fetched", 0),
                              rate=f"{counts.get('new', 0)} new, {counts.get('changed', 0)} changed, {rate:.1f} pages/s")

    def index(self, done: int, total: int, started: float | None = None) -> None:
        """Embedding progress: chunks done of total, rate and ETA."""
        if not self._progress:
            return
        task = self._task("index", "index: embed chunks", total or None)
        t = self._progress.tasks[task]
        rate = done / t.elapsed if t.elapsed else 0.0
        self._progress.update(task, completed=done, total=total or None, rate=f"{rate:.1f} chunks/s")

    def job_event(self, event: dict) -> None:
        if event.get("stage") == "crawl":
            self.crawl(event.get("counts", {}), event["source"])
        elif event.get("stage") == "index" and event.get("total"):
            self.index(event["done"], event["total"])
