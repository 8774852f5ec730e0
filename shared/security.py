"""HTTP hardening of both services and the checks of production mode.

`add_security_headers` runs on every response: `nosniff`, no referrer, a
content security policy (the docs page sets its own), `no-store` on the API
(every response there may contain personal data) and CORS headers for the origins
configured in `PUPIL_RECORDS_CORS_ORIGINS`, none by default.

`check_production` rejects settings that would run a production service with a
default or missing secret, or with a secret that other users of the host can
read; the web app factories call it when `PUPIL_RECORDS_ENV=production`.
"""

from __future__ import annotations

import base64
import binascii
import stat
from pathlib import Path

from flask import Request, Response
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from shared.config import ConfigurationError, Settings
from shared.storage import is_memory

API_PATH_PREFIX = "/api/v1/"
# A JSON response loads nothing, so the browser may load or frame nothing.
DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'"
CORS_ALLOWED_HEADERS = "Authorization, Content-Type, X-Purpose, X-Request-Id"
CORS_EXPOSED_HEADERS = "Location, Retry-After, WWW-Authenticate, X-Request-Id"
CORS_MAX_AGE_SECONDS = 600
# Passwords that appear in examples and images. A production service must not
# run with one of them.
WELL_KNOWN_PASSWORDS = frozenset(
    {"secret", "password", "postgres", "changeme", "change-me", "example"}
)
OTHERS_READ_WRITE = stat.S_IROTH | stat.S_IWOTH
GROUP_OR_OTHERS = stat.S_IRWXG | stat.S_IRWXO
MASTER_KEY_BYTES = 32


def add_security_headers(
    request: Request, response: Response, cors_origins: tuple[str, ...]
) -> Response:
    """Add the hardening headers and, for an allowed origin, the CORS headers."""
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers.setdefault("Content-Security-Policy", DEFAULT_CSP)
    if request.path.startswith(API_PATH_PREFIX):
        response.headers["Cache-Control"] = "no-store"
    if cors_origins:
        _add_cors_headers(request, response, cors_origins)
    return response


def docs_policy(style_hash: str) -> str:
    """Return the policy of the docs page: its one inline style, nothing else."""
    return (
        f"default-src 'none'; style-src '{style_hash}'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    )


def _add_cors_headers(
    request: Request, response: Response, origins: tuple[str, ...]
) -> None:
    response.vary.add("Origin")
    origin = request.headers.get("Origin", "").lower()
    if origin not in origins:
        return
    response.headers["Access-Control-Allow-Origin"] = origin
    response.headers["Access-Control-Expose-Headers"] = CORS_EXPOSED_HEADERS
    preflight = request.method == "OPTIONS" and request.headers.get(
        "Access-Control-Request-Method"
    )
    if preflight and "Allow" in response.headers:
        response.headers["Access-Control-Allow-Methods"] = response.headers["Allow"]
        response.headers["Access-Control-Allow-Headers"] = CORS_ALLOWED_HEADERS
        response.headers["Access-Control-Max-Age"] = str(CORS_MAX_AGE_SECONDS)


# Production mode


def check_production(settings: Settings, service: str | None = None) -> None:
    """Raise `ConfigurationError` listing every reason the settings are unsafe."""
    problems = production_problems(settings, service)
    if problems:
        raise ConfigurationError(
            "refusing to start in production mode (PUPIL_RECORDS_ENV=production): "
            + "; ".join(problems)
        )


def production_problems(settings: Settings, service: str | None = None) -> list[str]:
    """Return why `settings` must not serve in production; empty when they may.

    The master key is checked for the records service only, or when `service`
    is None, because the archive stores no encrypted personal data.
    """
    problems = _private_directory_problems(settings.data_dir)
    problems += _token_file_problems(settings.tokens_file)
    for name, url in (
        ("RECORDS_DATABASE_URL", settings.records_database_url),
        ("ARCHIVE_DATABASE_URL", settings.archive_database_url),
    ):
        problems += _database_url_problems(name, url)
    if service in (None, "records"):
        problems += _master_key_problems(settings)
    # The token file usually lives in the data dir: name that folder once.
    return list(dict.fromkeys(problems))


def _token_file_problems(path: Path) -> list[str]:
    return _private_file_problems(
        path,
        "the token file",
        "issue the first token with `pupil-records token issue`",
    )


def _master_key_problems(settings: Settings) -> list[str]:
    if settings.master_key:
        return _master_key_text_problems(settings.master_key)
    return _private_file_problems(
        settings.key_file,
        "the master key file",
        "set PUPIL_RECORDS_MASTER_KEY or PUPIL_RECORDS_MASTER_KEY_FILE, or copy "
        "the key that encrypted the existing data there",
    )


def _master_key_text_problems(text: str) -> list[str]:
    try:
        secret = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        return ["PUPIL_RECORDS_MASTER_KEY is not valid base64"]
    if len(secret) != MASTER_KEY_BYTES:
        return [f"PUPIL_RECORDS_MASTER_KEY must encode {MASTER_KEY_BYTES} bytes"]
    if len(set(secret)) == 1:
        return ["PUPIL_RECORDS_MASTER_KEY repeats one byte, which is a placeholder"]
    return []


def _private_file_problems(path: Path, what: str, remedy: str) -> list[str]:
    try:
        info = path.stat()
    except FileNotFoundError:
        return [f"{what} {path} does not exist; {remedy}"]
    except OSError as error:
        return [f"{what} {path} cannot be read: {error.strerror}"]
    problems = []
    if not stat.S_ISREG(info.st_mode):
        problems.append(f"{what} {path} is not a regular file")
    elif info.st_mode & GROUP_OR_OTHERS:
        problems.append(
            f"{what} {path} has mode {stat.filemode(info.st_mode)}; "
            "make it readable by its owner only (chmod 600)"
        )
    problems += _private_directory_problems(path.parent)
    return problems


def _private_directory_problems(folder: Path) -> list[str]:
    try:
        info = folder.stat()
    except FileNotFoundError:
        return []
    except OSError as error:
        return [f"the folder {folder} cannot be read: {error.strerror}"]
    if info.st_mode & OTHERS_READ_WRITE:
        return [
            f"the folder {folder} has mode {stat.filemode(info.st_mode)}; other "
            "users may list or change it, so remove their access (chmod o-rwx)"
        ]
    return []


def _database_url_problems(name: str, url: str) -> list[str]:
    if is_memory(url):
        return [f"{name} selects the in-process test store, which keeps nothing"]
    try:
        parsed = make_url(url)
    except ArgumentError:
        return [f"{name} is not a valid database URL"]
    if parsed.get_backend_name() != "postgresql":
        return []
    if not parsed.password:
        return [f"{name} gives no password for the PostgreSQL user"]
    if str(parsed.password).lower() in WELL_KNOWN_PASSWORDS:
        return [
            f"{name} uses a well-known example password; set a random one "
            "(e.g. with docker/init-secrets.sh)"
        ]
    return []
