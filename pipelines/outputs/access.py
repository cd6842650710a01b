"""Who may reach the analyzer's HTTP endpoints (``/metrics`` and the web view), and how.

``--web-config FILE`` (``web_config``) reads a web configuration in the format of Prometheus's own
(exporter-toolkit's ``web-config.yml``, so one file can serve both)::

    tls_server_config:
      cert_file: server.crt     # relative paths: from the file's folder
      key_file: server.key
    basic_auth_users:
      prometheus: $2b$12$...    # bcrypt hashes (htpasswd -nBC 12 "" | tr -d ':\\n', or python -c "import bcrypt; ...")

TLS then serves both endpoints over HTTPS; users, HTTP basic authentication on every path. A file that cannot be
used (missing, not YAML, an unknown key, a certificate or key that does not load, a value that is not a bcrypt
hash) is refused at start in one line naming ``web_config``.

Whatever the configuration, the endpoints answer only GET and HEAD (405 otherwise). A password is checked with
bcrypt on a worker thread, one at a time; a wrong one then waits :data:`FAILED_WAIT` before the next check, so
guessing costs the analysis little CPU; past :data:`WAITING` checks waiting their turn, a request is answered
429 at once (a flood of guesses neither queues without bound nor holds up the scraper for long). A right one is
remembered (a hash of it, for the process's life) and not
checked again: a scraper every 15 s costs one bcrypt, not one each scrape. An unknown user costs the same as a
known one with a wrong password.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import ipaddress
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aiohttp import web

from streamer.errors import ConfigError

ALLOWED_METHODS = frozenset({"GET", "HEAD"})
REALM = "streamer"
FAILED_WAIT = 0.5  # seconds a wrong password waits for its answer (bcrypt costs ~0.05-0.3 s of CPU a check)
WAITING = 8  # password checks that may wait their turn; past that a request gets 429 at once
REMEMBERED = 64  # right passwords remembered at most
_TOP_KEYS = ("tls_server_config", "basic_auth_users")
_TLS_KEYS = ("cert_file", "key_file", "min_version")
_TLS_VERSIONS = {"TLS12": ssl.TLSVersion.TLSv1_2, "TLS13": ssl.TLSVersion.TLSv1_3}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class WebAccess:
    """A loaded web configuration: the TLS context (None: plain HTTP) and the users' bcrypt hashes (empty: no
    authentication)."""

    path: Path | None = None
    tls: ssl.SSLContext | None = None
    users: Mapping[str, bytes] = field(default_factory=lambda: MappingProxyType({}))

    @property
    def scheme(self) -> str:
        return "https" if self.tls is not None else "http"


OPEN = WebAccess()


def load_web_config(path: Path) -> WebAccess:
    """The configuration in ``path``; ConfigError (one line naming ``web_config``) when it cannot be used."""

    def refuse(why: str) -> ConfigError:
        return ConfigError(f"web_config {str(path)!r}: {why}")

    try:
        import yaml

        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise refuse(exc.strerror.lower() if exc.strerror else str(exc)) from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise refuse(f"not YAML: {' '.join(str(exc).split())[:120]}") from None
    doc = {} if doc is None else doc
    if not isinstance(doc, dict):
        raise refuse(f"expected a mapping of {', '.join(_TOP_KEYS)}, got {type(doc).__name__}")
    _known(doc, _TOP_KEYS, refuse, "")
    tls = _tls(doc.get("tls_server_config"), path.parent, refuse)
    users = _users(doc.get("basic_auth_users"), refuse)
    return WebAccess(path=path, tls=tls, users=MappingProxyType(users))


def _known(table: Mapping[Any, Any], keys: tuple[str, ...], refuse: Callable[[str], ConfigError], where: str) -> None:
    odd = [str(k) for k in table if k not in keys]
    if odd:
        raise refuse(f"unknown key {where}{odd[0]!r} (known: {', '.join(keys)})")


def _tls(table: Any, folder: Path, refuse: Callable[[str], ConfigError]) -> ssl.SSLContext | None:
    if table is None:
        return None
    if not isinstance(table, dict):
        raise refuse("tls_server_config: expected a mapping with cert_file and key_file")
    _known(table, _TLS_KEYS, refuse, "tls_server_config.")
    if not table.get("cert_file") or not table.get("key_file"):
        raise refuse("tls_server_config: needs both cert_file and key_file")
    cert, key = (folder / Path(str(table[name])).expanduser() for name in ("cert_file", "key_file"))
    version = str(table.get("min_version", "TLS12"))
    if version not in _TLS_VERSIONS:
        raise refuse(f"tls_server_config.min_version: expected one of {', '.join(_TLS_VERSIONS)}, got {version!r}")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = _TLS_VERSIONS[version]
    try:
        context.load_cert_chain(cert, key)
    except FileNotFoundError as exc:
        raise refuse(f"tls_server_config: no such file: {str(exc.filename)!r}") from None
    except (OSError, ssl.SSLError) as exc:
        why = getattr(exc, "reason", None) or exc.strerror or str(exc)
        raise refuse(f"tls_server_config: cannot load {cert.name} and {key.name}: {str(why).lower()}") from None
    return context


def _users(table: Any, refuse: Callable[[str], ConfigError]) -> dict[str, bytes]:
    if table is None:
        return {}
    if not isinstance(table, dict) or not table:
        raise refuse("basic_auth_users: expected a mapping of user names to bcrypt hashes")
    users: dict[str, bytes] = {}
    for name, hashed in table.items():
        text = str(hashed) if hashed is not None else ""
        if not isinstance(name, str) or not name or ":" in name:
            raise refuse(f"basic_auth_users: {name!r} is not a user name (text without ':')")
        if not (text.startswith(("$2a$", "$2b$", "$2y$")) and len(text) == 60):
            raise refuse(f"basic_auth_users.{name}: not a bcrypt hash ($2b$... of 60 characters)")
        users[name] = text.encode()
    return users


def is_loopback(host: str) -> bool:
    """Whether only this machine can reach ``host`` (a name other than localhost may resolve beyond it)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Gate:
    """The endpoints' middleware: methods other than GET and HEAD get 405; with users, a request without the
    right credentials gets 401 asking for them (see the module's docstring)."""

    def __init__(self, access: WebAccess) -> None:
        self.access = access
        self._remembered: set[tuple[str, bytes]] = set()
        self._checking = asyncio.Lock()
        self._waiting = 0

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.method not in ALLOWED_METHODS:
            return web.Response(status=405, text="only GET and HEAD\n", headers={"Allow": "GET, HEAD"})
        if self.access.users and not (right := await self._authorized(request.headers.get("Authorization", ""))):
            if right is None:
                return web.Response(status=429, text="too many password checks at once: try again\n",
                                    headers={"Retry-After": "1"})  # fmt: skip
            return web.Response(status=401, text="unauthorized\n",
                                headers={"WWW-Authenticate": f'Basic realm="{REALM}", charset="UTF-8"'})  # fmt: skip
        return await handler(request)

    async def _authorized(self, header: str) -> bool | None:
        """Whether the credentials are right; None: too many checks are waiting to check them now."""
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or len(encoded) > 1024:
            return False
        try:
            user, colon, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        if not colon:
            return False
        token = (user, hashlib.sha256(password.encode()).digest())
        if token in self._remembered:
            return True
        if self._waiting >= WAITING:
            return None
        self._waiting += 1
        try:
            async with self._checking:
                if token in self._remembered:
                    return True
                # an unknown user is checked against a known one's hash (and refused): it costs what a known one does
                users = self.access.users
                hashed = users.get(user)
                right = await asyncio.to_thread(_check, password.encode(), hashed or next(iter(users.values())))
                right = right and hashed is not None
                if right:
                    if len(self._remembered) >= REMEMBERED:
                        self._remembered.clear()
                    self._remembered.add(token)
        finally:
            self._waiting -= 1
        if not right:
            await asyncio.sleep(FAILED_WAIT)  # outside the lock: the next check need not wait for it
        return right


def _check(password: bytes, hashed: bytes) -> bool:
    import bcrypt

    try:
        return bool(bcrypt.checkpw(password[:72], hashed))  # bcrypt reads 72 bytes at most
    except ValueError:  # a hash bcrypt cannot read (checked for its form only at start)
        return False
