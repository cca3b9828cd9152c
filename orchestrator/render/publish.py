"""Rich rendering for storage commands: progress while syncing, and result tables."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from orchestrator.publish.sync import SyncEvent, SyncResult, Target
from orchestrator.publish.verify import Drift, VerifyResult
from orchestrator.render.output import console

__all__ = ["sync_progress", "sync_table", "verify_table"]


@contextlib.contextmanager
def sync_progress(
    artifact: Path, targets: Sequence[Target], *, enabled: bool
) -> Iterator[Callable[[SyncEvent], None] | None]:
    """One bar per cloud, advancing by bytes as objects are uploaded or found already there."""
    if not enabled:
        yield None
        return
    total = sum(p.stat().st_size for p in artifact.rglob("*") if p.is_file())
    with Progress(
        TextColumn("{task.description:>12}"),
        BarColumn(),
        DownloadColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    ) as progress:
        tasks = {t.name: progress.add_task(t.name, total=total) for t in targets}

        def on_event(event: SyncEvent) -> None:
            if event.kind in ("skip", "upload"):
                progress.advance(tasks[event.target], event.size)

        yield on_event


def sync_table(results: Sequence[SyncResult], *, dry_run: bool) -> None:
    """Print one row per target, then what was removed and each error, one line each."""
    table = Table(title="sync (dry run: nothing changed)" if dry_run else "sync")
    for column in ("cloud", "version", "uploaded", "skipped", "LATEST", "time", "result"):
        table.add_column(column)
    for r in results:
        table.add_row(
            r.target,
            r.version,
            f"{len(r.uploaded)} ({_size(r.bytes_uploaded)})",
            str(len(r.skipped)),
            r.pointer
            + (f" (was {r.previous_version})" if r.pointer == "moved" and r.previous_version else ""),
            f"{r.seconds:.1f} s",
            "[green]ok[/]" if r.ok else "[red]failed[/]",
        )
    console.print(table)
    for r in results:
        if r.removed:
            what = "would remove" if dry_run else "removed"
            console.print(
                f"{escape(r.target)}: {what} {len(r.removed)} objects the manifest does not list: "
                f"{escape(', '.join(r.removed[:5]))}{' …' if len(r.removed) > 5 else ''}",
                soft_wrap=True,
                highlight=False,
            )
        if r.error:
            console.print(f"[red]error[/] {escape(r.target)}: {escape(r.error)}", soft_wrap=True)


def verify_table(results: Sequence[VerifyResult], disagreements: Sequence[Drift], *, deep: bool) -> None:
    """Print one row per target, then every drift and disagreement, one line each."""
    table = Table(title=f"verify ({'content hashed' if deep else 'metadata'})")
    for column in ("cloud", "version", "objects", "result"):
        table.add_column(column)
    for r in results:
        result = "[green]ok[/]" if r.ok else f"[red]{len(r.drift)} problem(s)[/]"
        table.add_row(r.target, r.version or "-", str(r.objects_checked), result)
    console.print(table)
    for d in [*(d for r in results for d in r.drift), *disagreements]:
        console.print(f"[red]drift[/] {escape(str(d))}", soft_wrap=True)


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} B"
    value = n / 1000
    for unit in ("kB", "MB"):
        if value < 1000:
            return f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"
