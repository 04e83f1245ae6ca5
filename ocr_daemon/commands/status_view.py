"""Rendering of `ocr-daemon status` with rich: tables, progress bars, and a live view."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from ocr_daemon.commands.status import Status
from ocr_daemon.errors import OcrDaemonError

STATE_STYLE = {"queued": "yellow", "processing": "cyan", "completed": "green",
               "failed": "red", "cancelled": "magenta"}


def _short(text: str | None, width: int = 60) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[:width - 1] + "…"


def _bar(pct: int) -> Table:
    cell = Table.grid(padding=(0, 1))
    cell.add_row(ProgressBar(total=100, completed=pct, width=24), Text(f"{pct:3d}%"))
    return cell


def _chunk_errors(doc: dict[str, Any]) -> Text:
    errors = doc["errors"]
    if not errors:
        return Text("")
    first = errors[0]
    more = f" (+{len(errors) - 1})" if len(errors) > 1 else ""
    return Text(f"#{first['chunk']} {first['code']}: {_short(first['message'], 50)}{more}",
                style="red")


def documents_table(docs: list[dict[str, Any]]) -> RenderableType:
    if not docs:
        return Text("No documents in flight.", style="dim")
    table = Table(title="Documents in flight", title_justify="left", expand=False)
    for column in ("name", "watch", "state", "progress", "chunks", "chunk errors"):
        table.add_column(column, no_wrap=column != "chunk errors")
    for d in docs:
        c = d["chunks"]
        chunks = f"{c['completed']}/{c['total']}"
        if c["failed"]:
            chunks += f" ({c['failed']} failed)"
        table.add_row(_short(d["name"] or d["doc_id"], 40), d["watch"] or "",
                      Text(d["state"], style=STATE_STYLE.get(d["state"], "")),
                      _bar(d["progress_percentage"]), chunks, _chunk_errors(d))
    return table


def queues_table(queues: dict[str, dict[str, int]]) -> RenderableType:
    table = Table(title="Queues", title_justify="left")
    table.add_column("queue")
    table.add_column("waiting", justify="right")
    table.add_column("unacked", justify="right")
    for name, depth in queues.items():
        table.add_row(name, str(depth["waiting"]), str(depth["unacked"]))
    return table


def workers_table(workers: list[dict[str, Any]] | None) -> RenderableType:
    if workers is None:
        return Text("")
    if not workers:
        return Text("No worker answered.", style="bold red")
    table = Table(title="Workers", title_justify="left")
    for column in ("name", "pid", "pool", "queues", "active", "processed"):
        table.add_column(column, justify="right" if column in ("pid", "active",
                                                              "processed") else "left")
    for w in workers:
        pool = f"{w['pool']} ×{w['concurrency']}" if w["concurrency"] else w["pool"]
        table.add_row(w["name"], str(w["pid"] or "?"), pool, ",".join(w["queues"]),
                      str(w["active"]), str(w["processed"]))
    return table


def failures_table(failures: list[dict[str, Any]]) -> RenderableType:
    if not failures:
        return Text("No recent failures.", style="dim")
    table = Table(title="Recent failures", title_justify="left")
    for column in ("name", "watch", "state", "error", "finished"):
        table.add_column(column)
    for f in failures:
        table.add_row(_short(f["name"] or f["doc_id"], 40), f["watch"] or "",
                      Text(f["state"], style=STATE_STYLE.get(f["state"], "")),
                      f"{f['code']}: {_short(f['message'], 70)}", f["finished_at"] or "")
    return table


def inbox_table(inbox: dict[str, Any]) -> RenderableType:
    entries = inbox.get("left_alone") or []
    if not entries:
        return Text("")
    total = sum(sum(c.values()) for c in inbox.get("counts", {}).values())
    more = f" (first {len(entries)} of {total})" if total > len(entries) else ""
    table = Table(title=f"Left in the inbox{more}", title_justify="left")
    for column in ("watch", "entry", "why", "size", "unchanged"):
        table.add_column(column, justify="right" if column in ("size", "unchanged") else "left")
    for e in entries:
        table.add_row(e["watch"], _short(e["path"], 40), f"{e['reason']}: {e['hint']}",
                      str(e["size"]), f"{e['age']:.0f} s")
    return table


def engines_text(engines: dict[str, Any]) -> Text:
    gem = engines.get("gemini", {})
    text = Text("Gemini: ")
    if gem.get("state") == "disabled":
        for d in gem["disabled"]:
            text.append(f"DISABLED, the API key was rejected ({d.get('reason')}) since "
                        f"{d.get('since')}; checked again in {d.get('expires_in')} s. ",
                        style="bold red")
        for r in gem.get("refused", []):
            text.append(f"DISABLED for model {r.get('model')}: {r.get('message')}; fix "
                        f"{r.get('key')} (checked again in {r.get('expires_in')} s). ",
                        style="bold red")
    elif gem.get("state") == "paused":
        for p in gem["paused"]:
            text.append(f"PAUSED, daily quota of {p.get('model')} spent "
                        f"({p.get('quota_id')}); resumes at {p.get('until')}. ",
                        style="bold yellow")
    else:
        text.append("ok", style="green")
    batch = gem.get("batch") or {}
    if batch.get("jobs") or batch.get("staged"):
        text.append(f"\nGemini Batch API: {batch['jobs']} jobs running, {batch['staged']} "
                    f"chunk requests staged for the next")
    today = gem.get("today") or {}
    if today.get("requests"):
        text.append(f"\nGemini today ({today['date']} UTC): {today['requests']} requests, "
                    f"{today['prompt_tokens']:,} prompt, {today['output_tokens']:,} output, "
                    f"{today['thinking_tokens']:,} thinking tokens")
        if today.get("cost_estimate") is not None:
            text.append(f", about {today['cost_estimate']:.4f} at the configured prices")
    return text


def render(status: Status) -> RenderableType:
    return Group(
        Text(f"ocr-daemon status at {status.generated_at}", style="bold"),
        documents_table(status.documents),
        queues_table(status.queues),
        workers_table(status.workers),
        failures_table(status.recent_failures),
        inbox_table(status.inbox),
        engines_text(status.engines),
    )


def follow(look: Callable[[], Status], console: Console, interval: float = 1.0,
           stop: threading.Event | None = None) -> None:
    """Redraw every ``interval`` seconds until Ctrl-C (or ``stop``); leaves the last view."""
    stop = stop or threading.Event()
    try:
        with Live(console=console, auto_refresh=False, redirect_stdout=False,
                  redirect_stderr=False) as live:
            while True:
                started = time.monotonic()
                try:
                    view = render(look())
                except OcrDaemonError as exc:  # Redis away for a moment: say so, look again
                    view = Text(f"ocr-daemon: {exc.message}", style="bold red")
                live.update(view, refresh=True)
                if stop.wait(max(0.0, interval - (time.monotonic() - started))):
                    return
    except KeyboardInterrupt:
        return
