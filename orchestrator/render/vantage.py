"""The vantage points in `orchestrator status`: each point's last observation and its age, the
quorum view per cloud, and who holds the leader lease (docs/design/quorum.md)."""

from __future__ import annotations

import time
from typing import Any

from rich.table import Table

from orchestrator.render.output import console, shown

__all__ = ["vantage_tables"]


def vantage_tables(vantage: dict[str, Any]) -> None:
    """Print the ``vantage`` part of a status report (:meth:`VantageRound.as_dict`)."""
    points = Table(title="vantage points")
    for column in ("point", "last observation", "age", "sees", "error"):
        points.add_column(column)
    for name, point in vantage["points"].items():
        clouds = ", ".join(f"{c} {v['verdict']}" for c, v in point["clouds"].items()) or "-"
        points.add_row(
            shown(name),
            shown(clouds),
            "-" if point["age_s"] is None else f"{point['age_s']:.0f} s",
            {True: "yes", False: "[red]nothing[/]", None: "-"}[point["seeing"]],
            shown(point["error"] or ""),
        )
    console.print(points)
    quorum = Table(title="quorum view")
    for column in ("cloud", "view", "voters", "see it failing", "why"):
        quorum.add_column(column)
    for cloud, view in vantage["quorum"].items():
        quorum.add_row(
            cloud,
            view["quorum"],
            ", ".join(view["voters"]) or "-",
            ", ".join(view["failing"]) or "-",
            shown(view["reason"]),
        )
    console.print(quorum)
    lease = vantage.get("lease") or {}
    if lease.get("holder"):
        until = time.strftime("%H:%M:%S", time.localtime(lease["expires_at"]))
        console.print(f"leader lease: {shown(lease['holder'])}, epoch {lease['epoch']}, until {until}")
    else:
        why = f" ({shown(lease['note'])})" if lease.get("note") else ""
        console.print(f"leader lease: no vantage point holds a majority of its copies{why}", soft_wrap=True)
