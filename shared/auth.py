"""Bearer tokens, roles and their enforcement in Flask.

Tokens live in a JSON file that stores only their SHA-256 hashes. Both
services read the file and reload it when it changes, so a newly issued token
works at once.

Who may call a route is decided by one table, `shared.access.ROUTES`.
`init_auth(app, store, rules=...)` installs a `before_request` hook that looks
up the matched route there and checks the caller before any view decorator
runs. So authentication (401, 429) and the role (403) come before the body
checks of `@blp.arguments` (415, 413, 400, 422) whatever the order of the
decorators. Routing errors (404, 405) come first of all. A route missing from
the table is refused (403) for every caller, so a forgotten entry fails closed.
"""

from __future__ import annotations

import fcntl
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import tempfile
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, TypeVar, cast
from urllib.parse import unquote_to_bytes

from flask import Flask, current_app, g, request

from shared.access import ROLES, STAFF, AccessTable, Route
from shared.actor import Principal, reset_principal, set_principal
from shared.clock import iso_utc, utc_now
from shared.problems import (
    Problem,
    bad_request,
    forbidden,
    too_many_requests,
    unauthorized,
    unavailable,
)

logger = logging.getLogger(__name__)

__all__ = ["ROLES", "STAFF"]

PURPOSE_HEADER = "X-Purpose"
INVALID_PERCENT_ESCAPE = re.compile(rb"%(?![0-9A-Fa-f]{2})")
MAX_PURPOSE_LENGTH = 1000
MAX_TOKEN_LENGTH = 512
MAX_HOLDER_NAME_LENGTH = 200
FAILURE_LIMIT = 20
FAILURE_WINDOW_SECONDS = 60.0
TOKEN_FILE_VERSION = 1
BEARER_SCHEME_NAME = "bearerAuth"

_EXTENSION_KEY = "pupil_records.auth"


class TokenStoreError(Exception):
    """The token file cannot be read or written, or a request to it is invalid."""


class UnknownRoleError(TokenStoreError, ValueError):
    """A role that is not one of `ROLES`."""


@dataclass(frozen=True)
class TokenInfo:
    """An issued token as listed: everything but the token and its hash."""

    id: str
    role: str
    name: str
    issued_at: str


@dataclass(frozen=True)
class _TokenRecord:
    id: str
    hash: str
    role: str
    name: str
    issued_at: str

    def to_json(self) -> dict[str, str]:
        return {
            "id": self.id,
            "hash": self.hash,
            "role": self.role,
            "name": self.name,
            "issued_at": self.issued_at,
        }

    def info(self) -> TokenInfo:
        return TokenInfo(self.id, self.role, self.name, self.issued_at)


def check_role(role: str) -> str:
    """Return `role` if it is one of `ROLES`, else raise `UnknownRoleError`."""
    if role not in ROLES:
        raise UnknownRoleError(
            f"unknown role {role!r}; expected one of: {', '.join(ROLES)}"
        )
    return role


def hash_token(token: str) -> str:
    """Return the hex SHA-256 digest under which a token is stored."""
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class TokenStore:
    """The token file: issues, lists, revokes and checks bearer tokens."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._lock_path = self.path.with_name(self.path.name + ".lock")
        self._reload_lock = threading.Lock()
        self._file_key: tuple[int, int, int] | None = None
        self._records: tuple[_TokenRecord, ...] = ()

    def issue(self, role: str, name: str) -> str:
        """Create a token for `name` in `role`, store its hash, return the token."""
        check_role(role)
        clean_name = " ".join(unicodedata.normalize("NFC", name).split())
        if not clean_name:
            raise TokenStoreError("the token holder's name must not be blank")
        if len(clean_name) > MAX_HOLDER_NAME_LENGTH:
            raise TokenStoreError(
                f"the token holder's name is longer than {MAX_HOLDER_NAME_LENGTH} "
                "characters"
            )
        token = secrets.token_urlsafe(32)
        record = _TokenRecord(
            id=secrets.token_hex(8),
            hash=hash_token(token),
            role=role,
            name=clean_name,
            issued_at=iso_utc(utc_now()),
        )
        with self._exclusive():
            records = self._read_file()
            self._write_file([*records, record])
        return token

    def list(self) -> list[TokenInfo]:
        """Return every stored token's id, role, holder and issue time."""
        return [record.info() for record in self._read_file()]

    def revoke(self, token_id: str) -> bool:
        """Delete the token with `token_id`; return whether it existed."""
        with self._exclusive():
            records = self._read_file()
            remaining = [record for record in records if record.id != token_id]
            if len(remaining) == len(records):
                return False
            self._write_file(remaining)
        return True

    def authenticate(self, token: str) -> Principal | None:
        """Return the principal of `token`, or None when it is not a known token."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        digest = hash_token(token)
        found: _TokenRecord | None = None
        # Compare with every record so that the time taken does not depend on
        # which record, if any, matches.
        for record in self._current_records():
            if hmac.compare_digest(record.hash, digest):
                found = record
        if found is None:
            return None
        return Principal(token_id=found.id, name=found.name, role=found.role)

    def _current_records(self) -> tuple[_TokenRecord, ...]:
        key = self._stat_key()
        with self._reload_lock:
            if key != self._file_key:
                self._records = tuple(self._read_file()) if key else ()
                self._file_key = key
            return self._records

    def _stat_key(self) -> tuple[int, int, int] | None:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return None
        except OSError as error:
            raise TokenStoreError(
                f"cannot read token file {self.path}: {error}"
            ) from None
        return (stat.st_ino, stat.st_mtime_ns, stat.st_size)

    def _read_file(self) -> Sequence[_TokenRecord]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as error:
            raise TokenStoreError(
                f"cannot read token file {self.path}: {error}"
            ) from None
        try:
            document = json.loads(text)
            entries = document["tokens"]
            return [self._parse_record(entry) for entry in entries]
        except (ValueError, KeyError, TypeError) as error:
            raise TokenStoreError(
                f"token file {self.path} is not a valid token file: {error}"
            ) from None

    @staticmethod
    def _parse_record(entry: Any) -> _TokenRecord:
        record = _TokenRecord(
            id=str(entry["id"]),
            hash=str(entry["hash"]),
            role=check_role(str(entry["role"])),
            name=str(entry["name"]),
            issued_at=str(entry["issued_at"]),
        )
        if len(record.hash) != 64:
            raise ValueError(f"token {record.id} has no SHA-256 hash")
        return record

    def _write_file(self, records: Sequence[_TokenRecord]) -> None:
        document = {
            "version": TOKEN_FILE_VERSION,
            "tokens": [record.to_json() for record in records],
        }
        text = json.dumps(document, ensure_ascii=False, indent=2) + "\n"
        descriptor, temp_name = tempfile.mkstemp(
            prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
        )
        try:
            os.fchmod(descriptor, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as temp:
                temp.write(text)
                temp.flush()
                os.fsync(temp.fileno())
            os.replace(temp_name, self.path)
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise
        _fsync_directory(self.path.parent)

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        # The lock lives in its own file because os.replace swaps the token
        # file's inode, and a lock on the old inode would not exclude anyone.
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)


def _fsync_directory(directory: Path) -> None:
    descriptor = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


class FailedAuthThrottle:
    """Counts failed authentications per address in fixed windows.

    NOTE: counts live in the process, so with several server processes an
    address gets up to the limit in each of them before it is throttled.
    """

    def __init__(
        self,
        limit: int = FAILURE_LIMIT,
        window: float = FAILURE_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = 10_000,
    ) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self._max_addresses = max_addresses
        self._windows: dict[str, tuple[float, int]] = {}
        self._lock = threading.Lock()

    def record_failure(self, address: str) -> float | None:
        """Count a failure; return seconds to wait if it is over the limit."""
        now = self._clock()
        with self._lock:
            started, count = self._windows.get(address, (now, 0))
            if now - started >= self.window:
                started, count = now, 0
            count += 1
            self._windows[address] = (started, count)
            if len(self._windows) > self._max_addresses:
                self._forget_expired(now)
        if count > self.limit:
            return started + self.window - now
        return None

    def _forget_expired(self, now: float) -> None:
        expired = [
            address
            for address, (started, _count) in self._windows.items()
            if now - started >= self.window
        ]
        for address in expired:
            del self._windows[address]


@dataclass(frozen=True)
class Access:
    """Roles a view declares with `requires`, checked against the role matrix."""

    roles: frozenset[str]
    personal_data: bool = False


@dataclass
class _AuthState:
    store: TokenStore
    throttle: FailedAuthThrottle
    rules: AccessTable


F = TypeVar("F", bound=Callable[..., Any])


def requires(*roles: str, personal_data: bool = False) -> Callable[[F], F]:
    """Declare the roles a view expects; the role matrix must agree.

    The matrix in `shared.access` decides who may call a route. A declaration
    that disagrees with it makes the route refuse every caller (403), so the
    two cannot silently differ.
    """
    if not roles:
        raise ValueError("requires() needs at least one role")
    for role in roles:
        check_role(role)
    access = Access(frozenset(roles), personal_data)

    def decorator(view: F) -> F:
        cast(Any, view)._access = access
        return view

    return decorator


def init_auth(
    app: Flask,
    store: TokenStore,
    *,
    rules: AccessTable,
    throttle: FailedAuthThrottle | None = None,
) -> None:
    """Check every request of `app` against `store` and the role matrix `rules`."""
    app.extensions[_EXTENSION_KEY] = _AuthState(
        store=store,
        throttle=throttle or FailedAuthThrottle(),
        rules=rules,
    )
    app.before_request(_authorize_request)
    app.teardown_request(_forget_principal)


def _state() -> _AuthState:
    state = current_app.extensions.get(_EXTENSION_KEY)
    if state is None:
        raise RuntimeError("call shared.auth.init_auth(app, store) before serving")
    return cast(_AuthState, state)


def _authorize_request() -> None:
    if request.routing_exception is not None or request.url_rule is None:
        # Flask raises the routing error (404 or 405) before any other check.
        return
    if request.method == "OPTIONS":
        return
    route = _state().rules.find(request.method, request.url_rule.rule)
    g.access_route = route
    if route is not None and route.public:
        return
    _check_access(route)


def access_route() -> Route | None:
    """Return the role-matrix entry of the current request, if it has one."""
    route: Route | None = g.get("access_route")
    return route


def view_for_request() -> Any:
    """Return the function that handles this request's method, if routed."""
    view = current_app.view_functions.get(request.endpoint or "")
    view_class = getattr(view, "view_class", None)
    if view_class is None:
        return view
    method = request.method.lower()
    handler = getattr(view_class, method, None)
    if handler is None and method == "head":
        handler = getattr(view_class, "get", None)
    return handler


def _check_access(route: Route | None) -> None:
    principal = _authenticate()
    g.principal = principal
    g._principal_token = set_principal(principal)
    if route is None:
        raise forbidden(f"No role may call {request.method} {request.path}.")
    _check_declaration(route)
    if principal.role not in route.roles:
        allowed = ", ".join(sorted(route.roles))
        raise forbidden(
            f"The role {principal.role} may not call {request.method} "
            f"{request.path}; allowed roles: {allowed}."
        )
    g.purpose = _read_purpose()
    if route.personal_data and principal.role == "inspector" and not g.purpose:
        raise forbidden(
            "An inspector must give the purpose of reading personal data in the "
            f"{PURPOSE_HEADER} header (percent-encoded UTF-8)."
        )


def _check_declaration(route: Route) -> None:
    declared: Access | None = getattr(view_for_request(), "_access", None)
    if declared is None:
        return
    if declared != Access(route.roles, route.personal_data):
        logger.error(
            "the roles declared on %s %s differ from the role matrix",
            request.method,
            route.path,
        )
        raise forbidden(
            f"No role may call {request.method} {request.path}: its declared "
            "roles differ from the role matrix."
        )


def _authenticate() -> Principal:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.strip().partition(" ")
    if not header.strip():
        # No credential was tried, so nothing was guessed: such requests are
        # not counted towards the throttle.
        raise unauthorized(
            "The request has no bearer token; send 'Authorization: Bearer <token>'."
        )
    if scheme.lower() != "bearer" or not token.strip():
        _fail("The Authorization header must be 'Bearer <token>'.")
    try:
        principal = _state().store.authenticate(token.strip())
    except TokenStoreError as error:
        logger.error("token file unreadable: %s", error)
        raise unavailable(
            "The token file cannot be read; try again later.", retry_after=5
        ) from None
    if principal is None:
        _fail("The bearer token is unknown or revoked; issue a new one.")
    return principal


def _fail(detail: str) -> NoReturn:
    address = request.remote_addr or "unknown"
    wait = _state().throttle.record_failure(address)
    if wait is not None:
        logger.warning("failed authentications over the limit from %s", address)
        raise too_many_requests(
            wait,
            "Too many failed authentications from this address; retry later.",
        )
    raise unauthorized(detail)


def _read_purpose() -> str | None:
    raw = request.headers.get(PURPOSE_HEADER)
    if raw is None:
        return None
    try:
        octets = raw.encode("latin-1")
    except UnicodeEncodeError:
        octets = raw.encode("utf-8", "surrogatepass")
    # unquote_to_bytes keeps an invalid escape such as "%ZZ" as it is, so it
    # is rejected here.
    if INVALID_PERCENT_ESCAPE.search(octets):
        raise _purpose_problem(
            "is not percent-encoded UTF-8: each '%' must start an escape of two "
            "hex digits, such as %25 for '%' itself"
        )
    try:
        text = unquote_to_bytes(octets).decode("utf-8")
    except UnicodeDecodeError:
        raise _purpose_problem("is not percent-encoded UTF-8") from None
    text = unicodedata.normalize("NFC", text).strip()
    if any(unicodedata.category(char) == "Cc" for char in text):
        raise _purpose_problem("contains control characters")
    if len(text) > MAX_PURPOSE_LENGTH:
        raise _purpose_problem(f"is longer than {MAX_PURPOSE_LENGTH} characters")
    if all(unicodedata.category(char) == "Cf" for char in text):
        return None
    return text


def _purpose_problem(reason: str) -> Problem:
    message = f"{PURPOSE_HEADER} {reason}."
    return bad_request(message, errors={f"header.{PURPOSE_HEADER}": [message]})


def _forget_principal(_error: BaseException | None) -> None:
    token = g.pop("_principal_token", None)
    if token is None:
        return
    try:
        reset_principal(token)
    except ValueError:
        # The token came from another context (a preserved test request);
        # resetting there is not possible, so the variable is left as is.
        logger.debug("principal token belongs to another context")
