"""A fake clock moves the sweep, housekeeping, status, progress waits and Gemini pauses."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from ocr_daemon.clock import iso
from ocr_daemon.commands.status import gather
from ocr_daemon.engines.gemini.guard import Guard
from ocr_daemon.errors import EnginePaused, ServiceUnavailable
from ocr_daemon.intake import housekeeping
from ocr_daemon.intake.claim import claim
from ocr_daemon.intake.dispatch import QUEUE_GRACE_SECONDS
from tests.conftest import Env, RedisServer
from tests.support.clock import FakeClock
from tests.support.inprocess import Machine


@pytest.fixture
def machine(make_env: Callable[..., Env]) -> Machine:
    return Machine(make_env().cfg)


def test_the_sweep_queues_a_claim_left_unqueued_once_the_clock_passes_its_grace(
        machine: Machine) -> None:
    manifest = claim(machine.paths, machine.drop("left.pdf", 1), machine.clock,
                     machine.watch.max_file_bytes)  # claimed, then the watcher died
    assert manifest is not None
    assert machine.dispatcher.sweep(machine.paths) == 0
    machine.clock.advance(QUEUE_GRACE_SECONDS + 1)
    assert machine.dispatcher.sweep(machine.paths) == 1
    assert [s[1] for s in machine.sent] == [manifest.doc_id]


def test_housekeeping_judges_temp_files_stale_by_the_clock(machine: Machine) -> None:
    temp = machine.paths.outbox / ".ocrd-0123456789abcdef.tmp"
    temp.write_text("left by a crash")
    assert housekeeping.tidy(machine.paths, machine.rt.store) == 0
    machine.clock.advance(housekeeping.STALE_AFTER + 1)
    assert housekeeping.tidy(machine.paths, machine.rt.store) == 1
    assert not temp.exists()


def test_status_is_stamped_with_the_clock(machine: Machine) -> None:
    machine.clock.advance(86400)
    assert gather(machine.rt.store).generated_at == iso(machine.clock.time())


def test_a_gemini_pause_is_timed_by_the_clock(redis_server: RedisServer,
                                              key_prefix: str) -> None:
    clock = FakeClock()
    guard = Guard(redis_server.client(), key_prefix, "f1ngerprint", "gemini-2.5-flash",
                  probe_ttl=5, clock=clock)
    info = guard.pause(600, "daily")
    assert info["until"] == iso(clock.time() + 600)
    clock.advance(500)
    with pytest.raises(EnginePaused) as paused, guard.sending(max_wait=1):
        pass
    assert paused.value.retry_after == pytest.approx(100)


def test_a_progress_writer_waiting_for_a_held_lock_gives_up_on_the_clock(
        machine: Machine) -> None:
    doc = machine.doc(machine.submit("held.pdf", 1))
    assert doc is not None
    held, _ = machine.rt.store.take_progress(doc.doc_id, "another-writer")
    assert held
    started = machine.clock.monotonic()
    with pytest.raises(ServiceUnavailable, match="progress lock"):
        machine.rt.progress.publish(doc.out, doc.manifest, None, wait=True)
    assert machine.clock.monotonic() - started > 10  # its sleeps moved the fake clock
