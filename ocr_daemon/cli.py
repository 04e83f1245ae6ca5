"""The `ocr-daemon` command line: run, watch, worker, config check, status."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
import yaml

from ocr_daemon import config as config_mod
from ocr_daemon import log
from ocr_daemon.errors import ConfigError, ExitCode, OcrDaemonError

F = TypeVar("F", bound=Callable[..., Any])

config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False), default=None,
    help=f"YAML configuration file (default: ${config_mod.CONFIG_ENV}).",
)


def _load(config_path: str | None) -> config_mod.Config:
    cfg = config_mod.load(config_path)
    log.configure(cfg.logging.level, cfg.logging.format)
    return cfg


def boundary(fn: F) -> F:
    """Our errors end the command with their message, hint and exit code (ExitCode); no
    traceback."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except OcrDaemonError as exc:
            click.echo(f"ocr-daemon: {exc.message}", err=True)
            if exc.hint and exc.hint not in exc.message:
                click.echo(f"  hint: {exc.hint}", err=True)
            sys.exit(ExitCode(exc.exit_code))

    return wrapper  # type: ignore[return-value]


@click.group()
@click.version_option(package_name="ocr-daemon")
def main() -> None:
    """Watched-folder OCR: drop files into an inbox, read text and JSON in the outbox."""


@main.command()
@config_option
@boundary
def run(config_path: str | None) -> None:
    """Everything on one host: embedded Redis (redis.url: embedded), workers and watcher."""
    from ocr_daemon.service.supervisor import run as run_all

    sys.exit(run_all(_load(config_path)))


@main.command()
@config_option
@boundary
def watch(config_path: str | None) -> None:
    """The watcher alone (intake, queueing, reaper) against a running Redis."""
    from ocr_daemon.service.supervisor import watch as watch_only

    sys.exit(watch_only(_load(config_path)))


@main.command()
@config_option
@boundary
def api(config_path: str | None) -> None:
    """The HTTP API and web page (api.listen; needs Redis and the watch folders)."""
    from ocr_daemon.api.server import serve

    sys.exit(serve(_load(config_path)))


@main.command()
@config_option
@click.option("--queues", "-Q", default=None, help="Comma-separated queues (default: config).")
@click.option("--concurrency", "-c", type=int, default=None, help="Pool size (default: config).")
@click.option("--pool", "-P", type=click.Choice(["prefork", "threads", "solo"]), default=None)
@click.option("--name", "-n", default=None, help="Celery node name, e.g. chunks1@%h.")
@boundary
def worker(config_path: str | None, queues: str | None, concurrency: int | None,
           pool: str | None, name: str | None) -> None:
    """A Celery worker of this app."""
    from ocr_daemon.delivery.worker import run_worker

    cfg = _load(config_path)
    sys.exit(run_worker(cfg, queues.split(",") if queues else None, concurrency, pool, name))


@main.group("config")
def config_group() -> None:
    """Configuration tools."""


@config_group.command("check")
@config_option
@click.option("--create", is_flag=True,
              help="Also create state_dir and the five folders of every watch.")
@click.option("--online", is_flag=True,
              help="Also ask the Gemini API once (models.get) whether key and model work.")
@boundary
def config_check(config_path: str | None, create: bool, online: bool) -> None:
    """Validate the configuration and print it resolved, secrets masked (creates nothing
    unless --create); list the installed Tesseract language packs and refuse configured
    languages that are not installed; with --online, ask Gemini whether key and model work."""
    from ocr_daemon.engines import languages

    cfg = config_mod.load(config_path)
    packs = languages.installed(cfg.engines.tesseract.binary)
    if packs is None:
        click.echo(f"# tesseract ({cfg.engines.tesseract.binary}): not installed here, "
                   "languages not checked")
    else:
        configured = {"engines.tesseract.languages": cfg.engines.tesseract.languages}
        configured |= {f"watches[{i}].engine_options.languages": str(w.engine_options[
            "languages"]) for i, w in enumerate(cfg.watches) if "languages" in w.engine_options}
        problems = languages.config_problems(configured, packs)
        if problems:
            raise ConfigError(problems)
        click.echo(f"# tesseract language packs installed: {', '.join(packs)}")
    if create:
        from ocr_daemon.record.layout import create_folders

        for path in create_folders(cfg):
            click.echo(f"# created {path}")
    click.echo(f"# {cfg.source}: valid")
    click.echo(yaml.safe_dump(config_mod.redacted(cfg), sort_keys=False, allow_unicode=True))
    if online:
        from ocr_daemon.engines.gemini.check import check

        verdict = check(cfg.engines.gemini)
        for line in verdict.lines(cfg.engines.gemini.model):
            click.echo(line)
        if not verdict.ok:
            sys.exit(ExitCode.ONLINE_CHECK_FAILED)


@main.command()
@config_option
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object (with --follow: one object per line).")
@click.option("--follow", "-f", is_flag=True, help="Keep updating every second until Ctrl-C.")
@click.option("--worker-timeout", type=float, default=1.0, show_default=True,
              help="Seconds to wait for workers to answer.")
@boundary
def status(config_path: str | None, as_json: bool, follow: bool, worker_timeout: float) -> None:
    """Documents in flight with progress, queues, workers, recent failures, engine state."""
    import time

    from rich.console import Console

    from ocr_daemon import celery_app, redis_conn, runtime
    from ocr_daemon.commands.status import gather
    from ocr_daemon.commands.status_view import follow as follow_live
    from ocr_daemon.commands.status_view import render

    cfg = config_mod.load(config_path)
    app = celery_app.configure(cfg, redis_conn.resolve_url(cfg))
    store = runtime.build(cfg).store

    def look() -> Any:
        return gather(store, app, worker_timeout, watches=cfg.watches)

    if not as_json:
        console = Console()
        if follow:
            follow_live(look, console)
        else:
            console.print(render(look()))
        return
    if not follow:
        click.echo(json.dumps(look().to_dict(), indent=2))
        return
    try:
        while True:
            started = time.monotonic()
            click.echo(json.dumps(look().to_dict(), separators=(",", ":")))
            time.sleep(max(0.0, 1.0 - (time.monotonic() - started)))
    except KeyboardInterrupt:
        return


@main.command("install-systemd")
@config_option
@click.option("--dir", "target", default="/etc/systemd/system", show_default=True,
              type=click.Path(file_okay=False), help="Where to write the unit files.")
@click.option("--user", default="ocr-daemon", show_default=True, help="User= of the units.")
@click.option("--group", default="ocr-daemon", show_default=True, help="Group= of the units.")
@click.option("--shared-group", default=None,
              help="SupplementaryGroups=: the group of scanners and people who share the files.")
@click.option("--redis-unit", default="redis-server.service", show_default=True,
              help="Local Redis unit to want and start after ('' for none; remote Redis: none).")
@click.option("--gemini-key-file", default=None,
              help="LoadCredential= source of the Gemini API key ('' for none; default: "
                   "engines.gemini.api_key_file if absolute, else /etc/ocr-daemon/gemini-api-key, "
                   "when a watch uses engine gemini or that key is set).")
@click.option("--executable", type=click.Path(dir_okay=False), default=None,
              help="The installed ocr-daemon program (default: beside this Python, or $PATH).")
@boundary
def install_systemd(config_path: str | None, target: str, user: str, group: str,
                    shared_group: str | None, redis_unit: str, gemini_key_file: str | None,
                    executable: str | None) -> None:
    """Write ocr-daemon-watch.service and ocr-daemon-worker@.service (and
    ocr-daemon-api.service with api.enabled); start nothing."""
    from ocr_daemon.service.systemd_units import install

    done = install(config_mod.load(config_path), Path(target), user=user, group=group,
                   shared_group=shared_group, redis_unit=redis_unit or None,
                   gemini_key_file=gemini_key_file,
                   executable=Path(executable) if executable else None)
    for path in done.written:
        click.echo(f"wrote {path}")
    for warning in done.settings.warnings:
        click.echo(f"warning: {warning}", err=True)
    click.echo("next, as root:")
    for step in done.next_steps:
        click.echo(f"  {step}")


@main.command()
@config_option
@click.option("--watch", "watch_name", default=None,
              help="The watch to submit to (default: the first one).")
@click.option("--sub", default="", help="A sub-folder of the inbox (recursive watches).")
@click.argument("files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))
@boundary
def submit(config_path: str | None, watch_name: str | None, sub: str,
           files: tuple[Path, ...]) -> None:
    """Copy FILES into a watch's inbox safely (temporary name, then rename)."""
    from ocr_daemon.commands.submit import submit as submit_files

    cfg = config_mod.load(config_path)
    try:
        watch = cfg.watch(watch_name) if watch_name else cfg.watches[0]
    except KeyError:
        names = ", ".join(w.name for w in cfg.watches)
        raise ConfigError([f"--watch {watch_name}: no such watch ({names})"]) from None
    for path in submit_files(watch, list(files), sub):
        click.echo(str(path))


@main.command()
@config_option
@click.argument("target")
@boundary
def cancel(config_path: str | None, target: str) -> None:
    """Stop a queued or running document (DOC_ID, or the path of its original or a sidecar);
    it ends as cancelled, with its original in failed/."""
    from ocr_daemon import celery_app, runtime
    from ocr_daemon.commands.cancel import cancel as cancel_document
    from ocr_daemon.delivery import webhook

    cfg = _load(config_path)
    rt = runtime.build(cfg, on_end=[webhook.notifier(celery_app.configure(cfg))])
    doc, state = cancel_document(rt, target)
    click.echo(f"{doc.doc_id} {doc.manifest.rel_path}: {state}; see {doc.out.error}")


@main.command()
@config_option
@click.option("--all", "every", is_flag=True, help="Every document in failed/.")
@click.option("--watch", "watch_name", default=None, help="With --all: only this watch.")
@click.argument("targets", nargs=-1, type=click.Path(path_type=Path))
@boundary
def retry(config_path: str | None, every: bool, watch_name: str | None,
          targets: tuple[Path, ...]) -> None:
    """Send documents in failed/ (their original or .error.json) back through the pipeline."""
    from ocr_daemon.commands.retry import retry as retry_failed

    if not every and not targets:
        raise click.UsageError("give the failed documents to retry, or --all")
    for path in retry_failed(config_mod.load(config_path), list(targets), every, watch_name):
        click.echo(str(path))
