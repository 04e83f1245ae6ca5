"""Bearer tokens: loaded from the config, a file or a systemd credential; compared in constant
time; without any, only a loopback address may be served."""

from __future__ import annotations

import hmac
import ipaddress
import os
from pathlib import Path

from ocr_daemon.config import ApiConfig
from ocr_daemon.errors import ConfigError, Unauthorized

CREDENTIAL = "api-tokens"  # LoadCredential=api-tokens:/etc/ocr-daemon/api-tokens


def _file_tokens(path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise ConfigError([f"api.tokens_file: cannot read {path} ({exc.strerror})"]) from None
    return [t.strip() for t in lines if t.strip() and not t.lstrip().startswith("#")]


def load_tokens(api: ApiConfig, environ: dict[str, str] | None = None) -> list[str]:
    """api.tokens, the lines of api.tokens_file, and $CREDENTIALS_DIRECTORY/api-tokens."""
    env = os.environ if environ is None else environ
    tokens = list(api.tokens)
    if api.tokens_file is not None:
        tokens += _file_tokens(api.tokens_file)
    credentials = env.get("CREDENTIALS_DIRECTORY")
    if credentials and (Path(credentials) / CREDENTIAL).is_file():
        tokens += _file_tokens(Path(credentials) / CREDENTIAL)
    short = [i for i, t in enumerate(tokens) if len(t) < 16]
    if short:
        raise ConfigError([f"api tokens: {len(short)} token(s) shorter than 16 characters"])
    return tokens


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_listen(api: ApiConfig, tokens: list[str]) -> None:
    """Refuse to serve a non-loopback address without a token."""
    if not tokens and not is_loopback(api.host):
        raise ConfigError([f"api.listen: {api.listen} is not a loopback address and no token "
                           "is configured (api.tokens or api.tokens_file): anyone could "
                           "upload and read documents"])


class Guard:
    """Checks a request's Authorization header against the tokens (none: open, loopback)."""

    def __init__(self, tokens: list[str]) -> None:
        self.tokens = [t.encode() for t in tokens]

    @property
    def enabled(self) -> bool:
        return bool(self.tokens)

    def check(self, authorization: str | None) -> None:
        if not self.tokens:
            return
        scheme, _, given = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            raise Unauthorized("this API needs a bearer token")
        data = given.strip().encode()
        ok = False
        for token in self.tokens:  # every token compared: the time says nothing about which
            ok |= hmac.compare_digest(data, token)
        if not ok:
            raise Unauthorized("the bearer token is not valid")
