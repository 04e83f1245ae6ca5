"""Each fact has one source; where two places must agree, these tests pin them together."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

from ocr_daemon import celery_app, errors
from ocr_daemon.config import (
    BUILTIN_ENGINES,
    ENGINE_OPTIONS,
    GeminiConfig,
    PdftextConfig,
    TesseractConfig,
    WatchConfig,
    WorkersConfig,
)
from ocr_daemon.delivery import names
from ocr_daemon.engines.registry import REGISTRY
from ocr_daemon.record.layout import FOLDERS, WatchPaths

ENGINE_SETTINGS = (GeminiConfig, TesseractConfig, PdftextConfig)


def test_the_engine_names_a_config_accepts_are_the_registry() -> None:
    assert set(BUILTIN_ENGINES) == set(REGISTRY)


def test_every_engine_option_is_a_setting_of_some_engine() -> None:
    fields = {name for model in ENGINE_SETTINGS for name in model.model_fields}
    assert not ENGINE_OPTIONS - fields, sorted(ENGINE_OPTIONS - fields)


def test_watch_paths_hold_the_five_folders_in_order() -> None:
    assert [f.name for f in dataclasses.fields(WatchPaths)][2:] == list(FOLDERS)
    paths = WatchPaths.of(WatchConfig.model_construct(name="w", root=Path("/srv/w")))
    assert [p.name for p in paths.folders] == list(FOLDERS)


def test_every_task_is_routed_to_a_queue_workers_consume() -> None:
    for module in names.TASK_MODULES:
        __import__(module)
    ours = {name for name in celery_app.app.tasks if name.startswith("ocr_daemon.")}
    assert ours == set(names.ROUTES)
    assert {route["queue"] for route in names.ROUTES.values()} <= set(names.QUEUES)
    assert names.DEFAULT_QUEUE in names.QUEUES
    assert WorkersConfig().queues == list(names.QUEUES)  # a default worker consumes them all


def test_task_names_stay_what_queued_messages_carry() -> None:
    from ocr_daemon.delivery import tasks, webhook

    assert tasks.process_document.name == names.PROCESS_DOCUMENT == "ocr_daemon.process_document"
    assert tasks.process_chunk.name == names.PROCESS_CHUNK == "ocr_daemon.process_chunk"
    assert tasks.window_done.name == names.WINDOW_DONE == "ocr_daemon.aggregate_chunks"
    assert webhook.send_webhook.name == names.SEND_WEBHOOK == "ocr_daemon.send_webhook"


def test_kombu_queue_keys_are_the_queue_and_its_priority_sub_queues() -> None:
    keys = names.queue_keys("p:", "chunks")
    assert keys[0] == "p:chunks" and len(keys) == 10
    assert all(k.startswith("p:chunks" + names.PRIORITY_SEP) for k in keys[1:])


def test_the_retry_decision_belongs_to_the_error() -> None:
    transient = errors.ServerError("503")
    paused = errors.EnginePaused("quota", retry_after=60)
    permanent = errors.CorruptDocument("bad xref")
    assert transient.should_retry(True) and not transient.should_retry(False)
    assert paused.should_retry(True) and paused.should_retry(False)  # waits are not counted
    assert not permanent.should_retry(True)


def test_every_exit_code_has_one_meaning_and_every_error_uses_one() -> None:
    assert len({int(c) for c in errors.ExitCode}) == len(errors.ExitCode)
    classes = [c for c in vars(errors).values()
               if isinstance(c, type) and issubclass(c, errors.OcrDaemonError)]
    assert errors.AlreadyRunning in classes and errors.InstallError in classes
    assert all(isinstance(c.exit_code, errors.ExitCode) for c in classes)


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OCR_DAEMON")}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**environ, **env}, check=False, timeout=60)


def test_deciding_an_ending_or_queueing_imports_no_celery() -> None:
    done = _python("import sys\n"
                   "import ocr_daemon.pipeline.finish, ocr_daemon.pipeline.chunk\n"
                   "import ocr_daemon.intake.dispatch, ocr_daemon.intake.reaper\n"
                   "import ocr_daemon.commands.cancel, ocr_daemon.commands.status\n"
                   "print(sorted(m for m in sys.modules if m.split('.')[0] == 'celery'))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_importing_the_celery_app_reads_no_configuration(tmp_path: Path) -> None:
    done = _python("import ocr_daemon.celery_app",
                   OCR_DAEMON_CONFIG=str(tmp_path / "missing.yaml"))
    assert done.returncode == 0, done.stderr


def test_celery_reads_the_configuration_from_the_environment_when_it_needs_it(
        tmp_path: Path) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({
        "redis": {"url": "redis://127.0.0.1:6399/3", "key_prefix": "pin:"},
        "watches": [{"name": "w", "root": "r"}]}), encoding="utf-8")
    done = _python(
        "import json\n"
        "from ocr_daemon.celery_app import app\n"
        "app.loader.import_default_modules()\n"
        "print(json.dumps({'broker': app.conf.broker_url,\n"
        "    'prefix': app.conf.broker_transport_options['global_keyprefix'],\n"
        "    'queues': [q.name for q in app.conf.task_queues],\n"
        "    'tasks': sorted(t for t in app.tasks if t.startswith('ocr_daemon.'))}))",
        OCR_DAEMON_CONFIG=str(path))
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen == {"broker": "redis://127.0.0.1:6399/3", "prefix": "pin:",
                    "queues": list(names.QUEUES), "tasks": sorted(names.ROUTES)}
    assert not (tmp_path / "r").exists()  # reading the configuration created nothing
