"""Intake: never miss a file, never take a half-written one, never touch what is not ours."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from ocr_daemon.config import WatchConfig
from ocr_daemon.intake.filters import Rules
from ocr_daemon.record.layout import stem_candidates
from tests.support.pdfs import make_text_pdf, page_text

from .conftest import PYTHON, Env, RedisServer, read_json, wait_for

IGNORED = [".DS_Store", "._scan.pdf", ".scan.pdf.Xa81qZ", "scan.pdf.part", "scan.pdf.partial",
           "scan.pdf.filepart", "scan.pdf.crdownload", "scan.tmp", "~$scan.pdf",
           ".syncthing.scan.pdf.tmp", ".pureftpd-upload.5f3a.scan.pdf",
           ".sftpgo-upload.1.scan.pdf", "Thumbs.db", "desktop.ini", "notes.txt"]
IGNORED_DIRS = ["@eaDir", ".Trashes", "__MACOSX", ".stfolder", ".stversions", ".~tmp~"]


def results(env: Env) -> list[Path]:
    return sorted(p for p in env.outbox.rglob("*.json") if not p.name.endswith(".progress.json"))


def test_default_rules_ignore_temp_and_system_names_and_accept_any_case() -> None:
    rules = Rules(WatchConfig(name="w", root=Path("/tmp")))
    assert [n for n in IGNORED if rules.name_accepted(n)] == []
    assert all(rules.dir_ignored(d) for d in IGNORED_DIRS)
    for name in ("scan.pdf", "SCAN.PDF", "photo.JPeG", "page.tif", "page.TIFF", "x.png"):
        assert rules.name_accepted(name), name
    extended = Rules(WatchConfig(name="w", root=Path("/tmp"), ignore=["draft-*"],
                                 patterns=["*.pdf"]))
    assert not extended.name_accepted("draft-1.pdf") and not extended.name_accepted("a.png")


def test_ignored_names_files_in_system_folders_and_odd_entries_are_left_alone(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env(watch={"recursive": True})
    proc = env.run_daemon()
    pdf = make_text_pdf(tmp_path / "real.pdf", ["real"])
    for name in IGNORED:
        shutil.copyfile(pdf, env.inbox / name)
    for folder in IGNORED_DIRS:
        (env.inbox / folder).mkdir()
        shutil.copyfile(pdf, env.inbox / folder / "inside.pdf")
    outside = tmp_path / "secret.pdf"
    shutil.copyfile(pdf, outside)
    (env.inbox / "link.pdf").symlink_to(outside)
    os.mkfifo(env.inbox / "pipe.pdf")
    (env.inbox / "folder.pdf").mkdir()
    env.drop(pdf, name="marker.pdf")  # processed after the others were seen
    env.wait_result("marker")
    time.sleep(1.5)
    left = {p.name for p in env.inbox.iterdir()}
    assert left == {*IGNORED, *IGNORED_DIRS, "link.pdf", "pipe.pdf", "folder.pdf"}
    assert all((env.inbox / d / "inside.pdf").exists() for d in IGNORED_DIRS)
    assert (env.inbox / "link.pdf").is_symlink() and outside.exists()
    assert [p.name for p in results(env)] == ["marker.json"]
    assert not any(env.failed.iterdir())
    log = proc.output()
    assert log.count('"not_a_regular_file"') == 2  # link and FIFO: logged once each


@pytest.fixture(scope="module")
def names_daemon(tmp_path_factory: pytest.TempPathFactory,
                 redis_server: RedisServer) -> Iterator[Env]:
    """One daemon for all the awkward names (each name has its own stem)."""
    env = Env(tmp_path_factory.mktemp("names"), redis_server.url, "names:")
    env.run_daemon()
    yield env
    env.close()


@pytest.mark.parametrize("name", [
    "scan with spaces.pdf", "-leading-dash.pdf", "shell $(rm -rf) `x` ;&|'\"*?.pdf",
    unicodedata.normalize("NFC", "Überweisung café.pdf"),
    unicodedata.normalize("NFD", "Überweisung café NFD.pdf"),
    "日本語の書類.pdf", "x" * 246 + ".pdf",
])
def test_awkward_names_work_end_to_end(names_daemon: Env, tmp_path: Path, name: str) -> None:
    env = names_daemon
    env.drop(make_text_pdf(tmp_path / "a.pdf", ["awkward"]), name=name)
    stem = stem_candidates(name, "doc-00000000")[0]  # cut so that <stem>.progress.json fits
    assert stem == name[:-4] or len(os.fsencode(stem + ".progress.json")) == 255
    result = env.wait_result(stem)
    assert result["source"]["name"] == name
    assert (env.outbox / f"{stem}.txt").read_text(encoding="utf-8") == "awkward"
    assert (env.archive / name).exists()


def test_recursive_watch_mirrors_folders_and_scans_folders_moved_in(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env(watch={"recursive": True})
    env.run_daemon()
    env.drop(make_text_pdf(tmp_path / "a.pdf", ["deep"]), sub="office/2026")
    bad = tmp_path / "broken.pdf"
    bad.write_text("not a pdf")
    env.drop(bad, sub="office")
    staged = env.root / "staging" / "batch"  # same filesystem: `mv` of a whole folder
    staged.mkdir(parents=True)
    for n in range(3):
        make_text_pdf(staged / f"b{n}.pdf", [f"batch {n}"])
    os.rename(staged, env.inbox / "batch")
    assert env.wait_result("a", sub="office/2026")["source"]["path"] == "office/2026/a.pdf"
    assert (env.outbox / "office/2026/a.txt").read_text() == "deep"
    assert (env.archive / "office/2026/a.pdf").exists()
    assert env.wait_error("broken", sub="office")["original"] == "failed/office/broken.pdf"
    for n in range(3):
        assert env.wait_result(f"b{n}", sub="batch")["pages"][0]["text"] == f"batch {n}"


def test_polling_mode_takes_files_after_equal_looks(make_env: Callable[..., Env],
                                                    tmp_path: Path) -> None:
    env = make_env(watch={"polling": True, "poll_interval": 0.5, "settle_checks": 3})
    env.run_daemon()
    target = env.inbox / "polled.pdf"
    data = make_text_pdf(tmp_path / "p.pdf", [page_text(n) for n in range(1, 30)],
                         compress=False).read_bytes()
    with open(target, "wb") as fh:  # pauses shorter than three polls: must not be taken
        for i in range(3):
            fh.write(data[i * len(data) // 3:(i + 1) * len(data) // 3])
            fh.flush()
            os.fsync(fh.fileno())
            time.sleep(0.6)
    result = env.wait_result("polled")
    assert result["source"]["size"] == len(data)


def test_duplicates_skip_archives_the_copy_and_names_the_earlier_document(
        make_env: Callable[..., Env], redis_server: RedisServer, tmp_path: Path) -> None:
    window = 12
    env = make_env(watch={"duplicates": "skip", "duplicates_window": window})
    env.run_daemon()
    pdf = make_text_pdf(tmp_path / "orig.pdf", ["once"])
    env.drop(pdf, name="first.pdf")
    first = env.wait_result("first")
    remembered = f"{env.prefix}sha:test:{first['source']['sha256']}"
    assert 0 < redis_server.client().ttl(remembered) <= window  # duplicates_window applies
    env.drop(pdf, name="again.pdf")
    again = env.wait_result("again")
    assert again["duplicate_of"]["doc_id"] == first["doc_id"]
    assert again["duplicate_of"]["result"] == "outbox/first.json"
    assert again["pages"] == [] and "not processed again" in again["warnings"][0]
    assert (env.archive / "again.pdf").exists()
    assert read_json(env.outbox / "again.progress.json")["state"] == "completed"
    assert not (env.outbox / "again.txt").exists()
    # Past the window the sha256 is forgotten: the same bytes are processed again.
    wait_for(lambda: not redis_server.client().exists(remembered), window + 30,
             what="the sha256 forgotten after duplicates_window")
    env.drop(pdf, name="later.pdf")
    later = env.wait_result("later")
    assert "duplicate_of" not in later and [p["text"] for p in later["pages"]] == ["once"]
    bad = tmp_path / "bad.pdf"
    bad.write_text("garbage")
    env.drop(bad, name="bad1.pdf")
    env.wait_error("bad1")
    env.drop(bad, name="bad2.pdf")  # a failed document is not a duplicate to skip
    assert env.wait_error("bad2")["error"]["code"] == "unsupported_type"


def test_empty_file_that_fills_later_is_not_taken_empty(make_env: Callable[..., Env],
                                                        tmp_path: Path) -> None:
    env = make_env()
    env.run_daemon()
    target = env.inbox / "late.pdf"
    target.touch()  # an upload that creates the file, then waits before writing
    time.sleep(2.5)
    assert target.exists()
    target.write_bytes(make_text_pdf(tmp_path / "l.pdf", ["late"]).read_bytes())
    assert env.wait_result("late")["pages"][0]["text"] == "late"


def test_submit_copies_safely_and_never_replaces_a_waiting_file(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env()
    pdf = make_text_pdf(tmp_path / "sub.pdf", ["submitted"])

    def submit() -> str:
        done = subprocess.run([PYTHON, "-m", "ocr_daemon", "submit", "--config",
                               str(env.config_path), str(pdf)], capture_output=True, text=True,
                              check=True)
        return done.stdout.strip()

    assert submit() == str(env.inbox / "sub.pdf")
    assert submit() == str(env.inbox / "sub-1.pdf")  # the first is still waiting
    assert sorted(p.name for p in env.inbox.iterdir()) == ["sub-1.pdf", "sub.pdf"]
    env.run_daemon()
    assert env.wait_result("sub")["pages"][0]["text"] == "submitted"
    assert env.wait_result("sub-1")["pages"][0]["text"] == "submitted"


def test_two_watchers_on_one_inbox_process_every_file_exactly_once(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    env = make_env(watch={"settle_seconds": 0.2})
    listeners = [env.listener(), env.listener()]
    for listener in listeners:
        env.start("watch", notify=listener)
    env.start("worker", "--concurrency", "2")
    staging = env.root / "staging"
    staging.mkdir(parents=True)  # the root too: loading the configuration created nothing
    for n in range(120):
        make_text_pdf(staging / f"s{n:03d}.pdf", [f"shared {n}"])
    for listener in listeners:
        listener.wait("READY=1")
    for p in sorted(staging.iterdir()):
        os.rename(p, env.inbox / p.name)
    wait_for(lambda: len(results(env)) >= 120, 180, interval=0.5, what="120 results")
    time.sleep(2)
    assert [p.stem for p in results(env)] == [f"s{n:03d}" for n in range(120)]
    assert len(list(env.archive.iterdir())) == 120
    assert not any(env.failed.iterdir())
    doc_ids = {read_json(p)["doc_id"] for p in results(env)}
    assert len(doc_ids) == 120


def test_bulk_drop_of_1000_files_all_come_out(make_env: Callable[..., Env],
                                              tmp_path: Path) -> None:
    env = make_env(watch={"settle_seconds": 0.5})
    env.run_daemon()
    staging = env.root / "staging"
    staging.mkdir()
    template = make_text_pdf(tmp_path / "t.pdf", ["bulk"]).read_bytes()
    for n in range(1000):
        (staging / f"bulk{n:04d}.pdf").write_bytes(template)
    for p in sorted(staging.iterdir()):
        os.rename(p, env.inbox / p.name)
    wait_for(lambda: len(results(env)) == 1000, 300, interval=1.0, what="1000 results")
    assert not any(env.inbox.iterdir()) and not any(env.failed.iterdir())
    assert len(list(env.archive.iterdir())) == 1000


# --- real upload clients ------------------------------------------------------------------


def big_pdf(tmp_path: Path, pages: int = 400) -> Path:
    return make_text_pdf(tmp_path / "big.pdf", [page_text(n, 60) for n in range(1, pages + 1)],
                         compress=False)


@pytest.mark.parametrize("flags", [[], ["--delay-updates"], ["--inplace"]],
                         ids=["default", "delay-updates", "inplace"])
def test_rsync_uploads_are_taken_only_when_complete(make_env: Callable[..., Env],
                                                    tmp_path: Path, flags: list[str]) -> None:
    env = make_env()
    env.run_daemon()
    source = big_pdf(tmp_path)
    subprocess.run(["rsync", "--bwlimit=400", *flags, str(source), f"{env.inbox}/"],
                   check=True, timeout=120)
    result = env.wait_result("big", timeout=60)
    assert result["source"]["size"] == source.stat().st_size
    assert len(result["pages"]) == 400
    assert not any(env.failed.iterdir())


def test_cp_of_a_large_file_and_mv_within_the_filesystem(make_env: Callable[..., Env],
                                                         tmp_path: Path) -> None:
    env = make_env()
    env.run_daemon()
    source = big_pdf(tmp_path, 1500)
    subprocess.run(["cp", str(source), str(env.inbox / "copied.pdf")], check=True)
    moved = env.root / "moved.pdf"
    shutil.copyfile(source, moved)
    subprocess.run(["mv", str(moved), str(env.inbox / "moved.pdf")], check=True)
    for stem in ("copied", "moved"):
        assert env.wait_result(stem, timeout=120)["source"]["size"] == source.stat().st_size


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """An OpenSSH server on a free loopback port, accepting one generated key."""
    from ocr_daemon.service.procs import free_port

    binary = shutil.which("sshd") or "/usr/sbin/sshd"
    keys = tmp_path / "ssh"
    keys.mkdir(mode=0o700)
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name)],
                       check=True)
    shutil.copyfile(keys / "client.pub", keys / "authorized_keys")
    port = free_port()
    config = keys / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {keys / 'host'}",
        f"AuthorizedKeysFile {keys / 'authorized_keys'}", "PasswordAuthentication no",
        "KbdInteractiveAuthentication no", "PermitRootLogin prohibit-password",
        "StrictModes no", "UsePAM no", f"PidFile {keys / 'sshd.pid'}",
        "Subsystem sftp internal-sftp", "LogLevel ERROR", ""]))
    Path("/run/sshd").mkdir(exist_ok=True)
    proc = subprocess.Popen([binary, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE)
    wait_for(lambda: subprocess.run(["ssh-keyscan", "-p", str(port), "127.0.0.1"],
                                    capture_output=True).returncode == 0, 15, what="sshd")
    yield port, keys / "client"
    proc.terminate()
    proc.wait(10)


def test_sftp_upload_over_several_seconds_is_taken_only_when_complete(
        make_env: Callable[..., Env], tmp_path: Path, sshd: tuple[int, Path]) -> None:
    port, key = sshd
    env = make_env(watch={"settle_seconds": 0.5})
    env.run_daemon()
    source = big_pdf(tmp_path, 300)
    batch = tmp_path / "batch"
    batch.write_text(f"put {source} {env.inbox}/uploaded.pdf\n")
    started = time.monotonic()
    seen_during: list[bool] = []

    def watch_inbox() -> None:  # while sftp writes, the file must stay in the inbox
        while time.monotonic() - started < 3:
            if (env.inbox / "uploaded.pdf").exists():
                seen_during.append(True)
            time.sleep(0.1)

    observer = threading.Thread(target=watch_inbox)
    observer.start()
    subprocess.run(["sftp", "-q", "-i", str(key), "-P", str(port), "-l", "800",
                    "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                    "-b", str(batch), "root@127.0.0.1"], check=True, timeout=120)
    observer.join()
    assert time.monotonic() - started > 3  # the upload really took seconds
    assert seen_during
    result = env.wait_result("uploaded", timeout=60)
    assert result["source"]["size"] == source.stat().st_size
    assert len(result["pages"]) == 300


def test_claims_left_in_processing_are_finished_after_a_crash_and_an_empty_redis(
        make_env: Callable[..., Env], tmp_path: Path) -> None:
    redis = RedisServer(tmp_path / "crash-redis")
    try:
        env = make_env()
        env.redis_url = redis.url
        env.write_config()
        listener = env.listener()
        env.start("watch", notify=listener)  # no worker: the documents stay claimed and queued
        listener.wait("READY=1")
        for n in range(5):
            env.drop(make_text_pdf(tmp_path / f"c{n}.pdf", [f"crash {n}"]))
        wait_for(lambda: len(list(env.processing.iterdir())) == 5, 30, what="5 claims")
        wait_for(lambda: all((d / "dispatch.json").exists() for d in env.processing.iterdir()),
                 30, what="5 dispatched")
        env.procs[0].kill_group()
        redis.restart()  # the queued messages are gone with it
        env.run_daemon()
        for n in range(5):
            assert env.wait_result(f"c{n}", timeout=60)["pages"][0]["text"] == f"crash {n}"
        # The result file is written last but one: the record is removed right after it.
        wait_for(lambda: not any(env.processing.iterdir()), 10, what="records removed")
    finally:
        redis.stop()
