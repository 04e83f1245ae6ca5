"""systemd units for `ocr-daemon watch`, `worker@<queues>` and `api`, rendered from the config."""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from ocr_daemon import atomic
from ocr_daemon.config import Config
from ocr_daemon.errors import ConfigError, InstallError, MissingDependency

WATCH_UNIT = "ocr-daemon-watch.service"
WORKER_UNIT = "ocr-daemon-worker@.service"
API_UNIT = "ocr-daemon-api.service"
API_TOKENS_FILE = Path("/etc/ocr-daemon/api-tokens")
API_CREDENTIAL = "api-tokens"
API_STOP_SEC = 30
DEFAULT_DIR = Path("/etc/systemd/system")
ENV_FILE = Path("/etc/ocr-daemon/ocr-daemon.env")
GEMINI_KEY_FILE = Path("/etc/ocr-daemon/gemini-api-key")
CREDENTIAL = "gemini-api-key"
WATCHDOG_SEC = 60
WATCH_STOP_SEC = 60
_HOMES = (Path("/home"), Path("/root"), Path("/run/user"))
_TMPS = (Path("/tmp"), Path("/var/tmp"))
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_UNIT_NAME = re.compile(r"^[A-Za-z0-9_.:@\\-]+\.(service|target|socket)$")
_LOCAL_HOSTS = {"localhost", "127.0.0.1", "::1", ""}


@dataclass(frozen=True)
class UnitSettings:
    """Everything the two units depend on; ``from_config`` reads it from a configuration."""

    executable: Path
    config: Path
    roots: tuple[Path, ...]
    state_dir: Path
    user: str = "ocr-daemon"
    group: str = "ocr-daemon"
    shared_group: str | None = None
    redis_unit: str | None = "redis-server.service"
    gemini_key_file: Path | None = None
    # (watch index, watch name, file) for each watch with a passwords_file
    password_files: tuple[tuple[int, str, Path], ...] = ()
    env_file: Path = ENV_FILE
    time_limit: int = 660
    solo_pool: bool = False
    api: bool = False  # api.enabled: ocr-daemon-api.service too
    api_tokens_file: Path | None = None  # LoadCredential= source of the API's tokens
    warnings: tuple[str, ...] = field(default=(), compare=False)

    @property
    def writable(self) -> tuple[Path, ...]:
        """What the service may write: the watch roots and state_dir."""
        return tuple(dict.fromkeys([*self.roots, self.state_dir]))

    @property
    def protect_home(self) -> str:
        """yes, unless the program, the config or a writable path lives in a home folder."""
        paths = (self.executable, self.config, *self.writable)
        return "read-only" if any(_under(p, _HOMES) for p in paths) else "yes"

    @property
    def stop_timeout(self) -> int:
        """Longer than the task hard limit, so a warm shutdown lets running tasks finish."""
        return self.time_limit + 60

    @property
    def worker_watchdog(self) -> int:
        """The solo pool runs tasks on the consumer loop itself: heartbeats pause per task."""
        return self.time_limit + WATCHDOG_SEC if self.solo_pool else WATCHDOG_SEC


def _under(path: Path, roots: tuple[Path, ...]) -> bool:
    return any(path == r or r in path.parents for r in roots)


def find_executable() -> Path:
    """The `ocr-daemon` script installed beside this interpreter, else the one on $PATH."""
    beside = Path(sys.executable).parent / "ocr-daemon"
    if beside.is_file():
        return beside.absolute()
    found = shutil.which("ocr-daemon")
    if found is None:
        raise MissingDependency("cannot find the installed `ocr-daemon` executable",
                                hint="Install the package (pip install .) or pass --executable.")
    return Path(found).absolute()


def _check_name(kind: str, value: str) -> str:
    if not _NAME.match(value):
        raise InstallError(f"{kind} {value!r}: use letters, digits, '_', '.' and '-' only")
    return value


def _local_redis(url: str) -> bool:
    parsed = urlparse(url)
    return parsed.scheme in ("unix", "redis+socket") or (parsed.hostname or "") in _LOCAL_HOSTS


def from_config(cfg: Config, *, executable: Path | None = None, user: str = "ocr-daemon",
                group: str = "ocr-daemon", shared_group: str | None = None,
                redis_unit: str | None = "redis-server.service",
                gemini_key_file: str | Path | None = None) -> UnitSettings:
    """Unit settings for ``cfg``: its watch roots and state_dir become the writable paths.

    The Gemini API key is passed as a credential from ``gemini_key_file``; by default (None)
    when a watch uses the gemini engine or engines.gemini.api_key_file is set, from that file
    if it is an absolute path, else from /etc/ocr-daemon/gemini-api-key; "" for none.
    """
    if cfg.redis.url == "embedded":
        raise ConfigError(["redis.url: 'embedded' only works with `ocr-daemon run`; the watch "
                           "and worker units need a Redis server, e.g. redis://127.0.0.1:6379/0 "
                           "(the distribution's redis-server.service)"])
    if cfg.source is None:
        raise InstallError("the configuration must come from a file (--config)")
    for kind, name in (("user", user), ("group", group), ("shared group", shared_group)):
        if name is not None:
            _check_name(kind, name)
    if redis_unit and not _UNIT_NAME.match(redis_unit):
        raise InstallError(f"redis unit {redis_unit!r}: not a unit name, e.g. redis.service")
    key_file: Path | None = Path(gemini_key_file) if gemini_key_file else None
    configured = cfg.engines.gemini.api_key_file
    if gemini_key_file is None and (configured or any(w.engine == "gemini" for w in cfg.watches)):
        key_file = configured if configured and configured.is_absolute() else GEMINI_KEY_FILE
    roots = tuple(w.root for w in cfg.watches)
    exe = executable or find_executable()
    tokens_file = _api_tokens_file(cfg)
    for what, path in (("executable", exe), ("gemini key file", key_file),
                       ("api tokens file", tokens_file)):
        if path is not None and not path.is_absolute():
            raise InstallError(f"{what} {path}: must be an absolute path")
    warnings = [f"{p}: PrivateTmp= gives the service its own /tmp and /var/tmp, so it cannot see "
                "this path; use a lasting place (e.g. /srv/ocr, /var/lib/ocr-daemon)"
                for p in (exe, cfg.source, *roots, cfg.state_dir) if _under(p, _TMPS)]
    return UnitSettings(
        executable=exe, config=cfg.source, roots=roots, state_dir=cfg.state_dir,
        user=user, group=group,
        shared_group=shared_group, redis_unit=redis_unit if _local_redis(cfg.redis.url) else None,
        gemini_key_file=key_file, time_limit=cfg.workers.time_limit,
        password_files=tuple((i, w.name, w.passwords_file) for i, w in enumerate(cfg.watches)
                             if w.passwords_file is not None),
        solo_pool=cfg.workers.pool == "solo", api=cfg.api.enabled,
        api_tokens_file=tokens_file, warnings=tuple(warnings),
    )


def _api_tokens_file(cfg: Config) -> Path | None:
    """The API's tokens come as a credential: from api.tokens_file, else (to serve beyond
    loopback, where a token is required) from /etc/ocr-daemon/api-tokens."""
    from ocr_daemon.api.auth import is_loopback

    if not cfg.api.enabled:
        return None
    if cfg.api.tokens_file is not None:
        return cfg.api.tokens_file
    return None if is_loopback(cfg.api.host) else API_TOKENS_FILE


def quote(value: str | Path, prefix: str = "", command: bool = False) -> str:
    """One word of a unit file setting, specifiers (%) kept literal; in a command line also
    variables ($)."""
    text = prefix + str(value)
    if "\n" in text or "\0" in text:
        raise InstallError(f"{text!r}: a unit file value cannot hold a newline")
    text = text.replace("%", "%%")
    if command:
        text = text.replace("$", "$$")
    if re.search(r"[\s\"'\\;]", text):
        text = '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return text


def _unit_section(s: UnitSettings, description: str) -> list[str]:
    after = ["network-online.target"] + ([s.redis_unit] if s.redis_unit else [])
    return [
        "[Unit]",
        f"Description={description}",
        f"Wants={' '.join(after)}",
        f"After={' '.join(after)}",
        "",
    ]


def _service_head(s: UnitSettings, exec_start: str, watchdog: int, stop: int) -> list[str]:
    return [
        "[Service]",
        "# READY=1 once serving, WATCHDOG=1 from the loop that proves progress, STOPPING=1.",
        "Type=notify",
        "NotifyAccess=main",
        f"ExecStart={exec_start}",
        f"WatchdogSec={watchdog}",
        "TimeoutStartSec=120",
        "# SIGTERM to the main process only: Celery's warm shutdown lets running tasks finish",
        "# (up to the hard time limit); whatever is left gets SIGKILL when the timeout ends.",
        "KillMode=mixed",
        f"TimeoutStopSec={stop}",
        "TimeoutAbortSec=30",
        "Restart=on-failure",
        "RestartSec=5",
        "",
        f"User={s.user}",
        f"Group={s.group}",
        *([f"SupplementaryGroups={s.shared_group}",
           "# Results readable and inbox writable for the shared group, nothing for others."]
          if s.shared_group else []),
        "UMask=0007",
        f"EnvironmentFile=-{quote(s.env_file)}",
        "Environment=PYTHONDONTWRITEBYTECODE=1",
    ]


def _sandbox(s: UnitSettings) -> list[str]:
    return [
        "",
        "# Sandbox: `systemd-analyze security <unit>` rates it.",
        "ProtectSystem=strict",
        "# The watch roots and state_dir of the configuration (- : skip a missing one, the",
        "# daemon then reports it with its config key).",
        "ReadWritePaths=" + " ".join(quote(p, "-") for p in s.writable),
        f"ProtectHome={s.protect_home}",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "DevicePolicy=closed",
        "PrivateMounts=yes",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=",
        "AmbientCapabilities=",
        "# Redis (TCP or a unix socket) and the Gemini API (HTTPS).",
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "RestrictSUIDSGID=yes",
        "LockPersonality=yes",
        "# Python, pypdfium2 and Tesseract need no writable+executable memory.",
        "MemoryDenyWriteExecute=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "# Other users' processes are hidden. The open-writer check only ever sees processes of",
        "# its own user (another user's /proc/PID/fd needs ptrace rights), so nothing is lost;",
        "# writers of other users are waited out by the settle time. Not ProcSubset=pid:",
        "# Celery's worker heartbeat reads /proc/loadavg.",
        "ProtectProc=invisible",
        "RemoveIPC=yes",
        "KeyringMode=private",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallFilter=~@privileged @resources",
        "SystemCallErrorNumber=EPERM",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]


def _header(name: str) -> list[str]:
    return [f"# {name}: written by `ocr-daemon install-systemd`; change it with",
            f"# `systemctl edit {name}` (a drop-in) or run install-systemd again.", ""]


def _command(s: UnitSettings, sub: str) -> str:
    return f"{quote(s.executable, command=True)} {sub} --config {quote(s.config, command=True)}"


def _password_credentials(s: UnitSettings) -> list[str]:
    """Each watch's passwords_file as a credential (both units load the configuration, which
    checks the file); the file itself may stay root's, mode 0600."""
    if not s.password_files:
        return []
    lines = ["# Known PDF passwords, copied by systemd into $CREDENTIALS_DIRECTORY (%d),",
             "# readable by this service only; watches[].passwords_file points there."]
    for index, name, path in s.password_files:
        credential = f"pdf-passwords-{name}"
        lines += [f"LoadCredential={credential}:{quote(path)}",
                  f"Environment=OCR_DAEMON__WATCHES__{index}__PASSWORDS_FILE=%d/{credential}"]
    return lines


def render_watch(s: UnitSettings) -> str:
    exec_start = _command(s, "watch")
    lines = [
        *_header(WATCH_UNIT),
        *_unit_section(s, "ocr-daemon watcher: inbox intake, queueing, reaper"),
        *_service_head(s, exec_start, WATCHDOG_SEC, WATCH_STOP_SEC),
        "SyslogIdentifier=ocr-daemon-watch",
        *_password_credentials(s),
        *_sandbox(s),
    ]
    return "\n".join(lines)


def render_worker(s: UnitSettings) -> str:
    # %I: the instance unescaped, so ocr-daemon-worker@documents\x2cchunks.service (from
    # `systemd-escape documents,chunks`) consumes two queues; %H: the host name.
    exec_start = _command(s, "worker") + " --queues %I --name ocrd-%i@%H"
    credential: list[str] = []
    if s.gemini_key_file is not None:
        credential = [
            "# The Gemini API key, copied by systemd into $CREDENTIALS_DIRECTORY (%d), readable",
            "# by this service only; engines.gemini.api_key_file points there.",
            f"LoadCredential={CREDENTIAL}:{quote(s.gemini_key_file)}",
            f"Environment=OCR_DAEMON__ENGINES__GEMINI__API_KEY_FILE=%d/{CREDENTIAL}",
        ]
    lines = [
        *_header(WORKER_UNIT),
        *_unit_section(s, "ocr-daemon worker for queue(s) %I"),
        *_service_head(s, exec_start, s.worker_watchdog, s.stop_timeout),
        "SyslogIdentifier=ocr-daemon-worker@%i",
        *credential,
        *_password_credentials(s),
        *_sandbox(s),
    ]
    return "\n".join(lines)


def render_api(s: UnitSettings) -> str:
    credential: list[str] = []
    if s.api_tokens_file is not None:
        credential = [
            "# The bearer tokens (one a line), copied by systemd into $CREDENTIALS_DIRECTORY",
            "# (%d), readable by this service only; api.tokens_file points there.",
            f"LoadCredential={API_CREDENTIAL}:{quote(s.api_tokens_file)}",
            f"Environment=OCR_DAEMON__API__TOKENS_FILE=%d/{API_CREDENTIAL}",
        ]
    lines = [
        *_header(API_UNIT),
        *_unit_section(s, "ocr-daemon HTTP API and web page (api.listen)"),
        *_service_head(s, _command(s, "api"), WATCHDOG_SEC, API_STOP_SEC),
        "SyslogIdentifier=ocr-daemon-api",
        *credential,
        *_sandbox(s),
    ]
    return "\n".join(lines)


def write_units(s: UnitSettings, target: Path) -> list[Path]:
    """Write the unit files into ``target``; nothing is started or reloaded."""
    written = []
    units = [(WATCH_UNIT, render_watch(s)), (WORKER_UNIT, render_worker(s))]
    if s.api:
        units.append((API_UNIT, render_api(s)))
    for name, text in units:
        path = target / name
        atomic.write_text(path, text)
        written.append(path)
    return written


def worker_units(queues: list[str]) -> list[str]:
    return [WORKER_UNIT.replace("@", f"@{q}") for q in queues]


def next_steps(s: UnitSettings, queues: list[str], target: Path) -> list[str]:
    """The shell commands an administrator runs next (printed, never run by us)."""
    q = shlex.quote
    owner = s.shared_group or s.group
    steps = [
        f"getent passwd {s.user} >/dev/null || useradd --system --user-group "
        f"--home-dir /nonexistent --shell /usr/sbin/nologin {s.user}",
    ]
    if s.shared_group:
        steps.append(f"getent group {s.shared_group} >/dev/null || groupadd {s.shared_group}")
    steps += [f"install -d -o {s.user} -g {owner} -m 2770 {q(str(p))}" for p in s.roots]
    steps.append(f"install -d -o {s.user} -g {s.group} -m 0750 {q(str(s.state_dir))}")
    steps.append(f"chgrp {s.group} {q(str(s.config))} && chmod 0640 {q(str(s.config))}")
    if s.gemini_key_file is not None:
        key = q(str(s.gemini_key_file))
        steps.append(f'(umask 077 && printf %s "$GEMINI_API_KEY" > {key})  # root-only, 0600')
    if s.api_tokens_file is not None:
        tokens = q(str(s.api_tokens_file))
        steps.append(f"test -s {tokens} || (umask 077 && python3 -c 'import secrets; "
                     f"print(secrets.token_urlsafe(32))' > {tokens})  # API token, root-only")
    names = (WATCH_UNIT, WORKER_UNIT, *((API_UNIT,) if s.api else ()))
    if target.absolute() != DEFAULT_DIR:
        files = " ".join(q(str(target.absolute() / n)) for n in names)
        steps.append(f"cp {files} {DEFAULT_DIR}/")
    units = [WATCH_UNIT, *worker_units(queues), *((API_UNIT,) if s.api else ())]
    steps.append(f"systemctl daemon-reload && systemctl enable --now {' '.join(units)}")
    return steps


@dataclass(frozen=True)
class Installed:
    settings: UnitSettings
    written: list[Path]
    next_steps: list[str]


def install(cfg: Config, target: Path = DEFAULT_DIR, **options: Any) -> Installed:
    """Render the units for ``cfg`` into ``target`` (``options``: see ``from_config``)."""
    settings = from_config(cfg, **options)
    written = write_units(settings, target)
    return Installed(settings, written, next_steps(settings, list(cfg.workers.queues), target))


# The settings of the reference units in systemd/ (tests keep them equal to the renderer).
EXAMPLE = UnitSettings(
    executable=Path("/opt/ocr-daemon/venv/bin/ocr-daemon"),
    config=Path("/etc/ocr-daemon/config.yaml"),
    roots=(Path("/srv/ocr/scans"),),
    state_dir=Path("/var/lib/ocr-daemon"),
    shared_group="scanners",
    gemini_key_file=GEMINI_KEY_FILE,
    api=True,
    api_tokens_file=API_TOKENS_FILE,
)


# python -m ocr_daemon.service.systemd_units systemd/  (refresh the examples)
if __name__ == "__main__":
    for written_path in write_units(EXAMPLE, Path(sys.argv[1] if len(sys.argv) > 1 else ".")):
        print(written_path)
