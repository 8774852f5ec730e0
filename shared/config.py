"""Settings of both services, read from the environment in one place."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


class ConfigurationError(Exception):
    """A setting is missing or invalid."""


DEFAULT_DATA_DIR = "./var"
DEFAULT_TIMEZONE = "Europe/Moscow"
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
DEFAULT_MIN_POSITION_TIMEOUT = 10.0
DEFAULT_RECORDS_URL = "http://127.0.0.1:8000"
DEFAULT_FOLLOWER_STALL_SECONDS = 60.0
# Threads of each gunicorn worker. A waiting request occupies a thread but
# uses little memory or CPU, so there are more threads than cores.
DEFAULT_WEB_THREADS = 16
DEFAULT_MAX_WAITING_PER_TOKEN = 8
MASTER_KEY_FILE_NAME = "master.key"
_ORIGIN = re.compile(
    r"https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?"
)


@dataclass(frozen=True)
class Settings:
    """Configuration shared by every process of both services."""

    data_dir: Path
    records_database_url: str
    archive_database_url: str
    tokens_file: Path
    timezone: ZoneInfo
    records_url: str
    archive_feed_token: str | None
    max_body_bytes: int
    min_position_timeout: float
    follower_max_lag: int
    production: bool
    # Browser origins allowed to call the API (CORS); none by default.
    cors_origins: tuple[str, ...] = ()
    # Seconds a follower may stay behind the head without advancing before
    # the readiness check reports it as stalled.
    follower_stall_seconds: float = DEFAULT_FOLLOWER_STALL_SECONDS
    # Base64 of the 32-byte key that wraps every pupil's data key; when unset,
    # the key is read from `master_key_file` (see services.records.keys).
    master_key: str | None = field(default=None, repr=False)
    master_key_file: Path | None = None
    # Requests of one web process that may wait at the same time (long-polls
    # of the feed, reads with `min_position`), and how many of them one token
    # may hold. Requests beyond these caps are served without waiting.
    max_waiting_requests: int = DEFAULT_WEB_THREADS // 2
    max_waiting_per_token: int = DEFAULT_MAX_WAITING_PER_TOKEN

    @classmethod
    def from_env(
        cls,
        environ: Mapping[str, str] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
    ) -> Settings:
        """Build settings from environment variables; `data_dir` wins over the env."""
        env = os.environ if environ is None else environ
        base = Path(data_dir or env.get("PUPIL_RECORDS_DATA_DIR") or DEFAULT_DATA_DIR)
        base = base.expanduser().absolute()
        max_waiting, max_waiting_per_token = _waiting_limits(env)
        return cls(
            data_dir=base,
            records_database_url=_database_url(
                env.get("RECORDS_DATABASE_URL")
                or f"sqlite:///{base / 'records.sqlite'}",
                _secret(env, "RECORDS_DATABASE_PASSWORD"),
            ),
            archive_database_url=_database_url(
                env.get("ARCHIVE_DATABASE_URL")
                or f"sqlite:///{base / 'archive.sqlite'}",
                _secret(env, "ARCHIVE_DATABASE_PASSWORD"),
            ),
            tokens_file=Path(
                env.get("PUPIL_RECORDS_TOKENS_FILE") or base / "tokens.json"
            ),
            timezone=_zone(env.get("PUPIL_RECORDS_TIMEZONE") or DEFAULT_TIMEZONE),
            records_url=(env.get("ARCHIVE_RECORDS_URL") or DEFAULT_RECORDS_URL).rstrip(
                "/"
            ),
            archive_feed_token=_secret(env, "ARCHIVE_FEED_TOKEN"),
            max_body_bytes=_positive_int(
                env, "PUPIL_RECORDS_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES
            ),
            min_position_timeout=_positive_float(
                env, "PUPIL_RECORDS_MIN_POSITION_TIMEOUT", DEFAULT_MIN_POSITION_TIMEOUT
            ),
            follower_max_lag=_positive_int(env, "PUPIL_RECORDS_FOLLOWER_MAX_LAG", 1000),
            production=env.get("PUPIL_RECORDS_ENV", "").lower() == "production",
            cors_origins=_origins(env.get("PUPIL_RECORDS_CORS_ORIGINS", "")),
            follower_stall_seconds=_positive_float(
                env,
                "PUPIL_RECORDS_FOLLOWER_STALL_SECONDS",
                DEFAULT_FOLLOWER_STALL_SECONDS,
            ),
            master_key=env.get("PUPIL_RECORDS_MASTER_KEY") or None,
            master_key_file=Path(
                env.get("PUPIL_RECORDS_MASTER_KEY_FILE") or base / MASTER_KEY_FILE_NAME
            ),
            max_waiting_requests=max_waiting,
            max_waiting_per_token=max_waiting_per_token,
        )

    @property
    def key_file(self) -> Path:
        """Return the master key file: the setting, or `master.key` in the data dir."""
        return self.master_key_file or self.data_dir / MASTER_KEY_FILE_NAME

    def with_env(self) -> dict[str, str]:
        """Return environment variables that reproduce these settings in a child."""
        env = {
            "PUPIL_RECORDS_DATA_DIR": str(self.data_dir),
            "RECORDS_DATABASE_URL": self.records_database_url,
            "ARCHIVE_DATABASE_URL": self.archive_database_url,
            "PUPIL_RECORDS_TOKENS_FILE": str(self.tokens_file),
            "PUPIL_RECORDS_TIMEZONE": self.timezone.key,
            "ARCHIVE_RECORDS_URL": self.records_url,
            "PUPIL_RECORDS_MAX_BODY_BYTES": str(self.max_body_bytes),
            "PUPIL_RECORDS_MIN_POSITION_TIMEOUT": str(self.min_position_timeout),
            "PUPIL_RECORDS_FOLLOWER_MAX_LAG": str(self.follower_max_lag),
            "PUPIL_RECORDS_FOLLOWER_STALL_SECONDS": str(self.follower_stall_seconds),
            "PUPIL_RECORDS_MAX_WAITING_REQUESTS": str(self.max_waiting_requests),
            "PUPIL_RECORDS_MAX_WAITING_PER_TOKEN": str(self.max_waiting_per_token),
        }
        if self.archive_feed_token:
            env["ARCHIVE_FEED_TOKEN"] = self.archive_feed_token
        if self.cors_origins:
            env["PUPIL_RECORDS_CORS_ORIGINS"] = ",".join(self.cors_origins)
        env["PUPIL_RECORDS_MASTER_KEY_FILE"] = str(self.key_file)
        if self.master_key:
            env["PUPIL_RECORDS_MASTER_KEY"] = self.master_key
        if self.production:
            env["PUPIL_RECORDS_ENV"] = "production"
        return env


def web_threads(env: Mapping[str, str]) -> int:
    """Return the threads of each gunicorn worker (`PUPIL_RECORDS_THREADS`)."""
    return _positive_int(env, "PUPIL_RECORDS_THREADS", DEFAULT_WEB_THREADS)


def _waiting_limits(env: Mapping[str, str]) -> tuple[int, int]:
    """Return the caps on waiting requests per web process and per token."""
    threads = web_threads(env)
    key = "PUPIL_RECORDS_MAX_WAITING_REQUESTS"
    max_waiting = _non_negative_int(env, key, threads // 2)
    if max_waiting >= threads:
        raise ConfigurationError(
            f"{key}={max_waiting} must be less than PUPIL_RECORDS_THREADS={threads}, "
            "so that threads stay free for requests that do not wait"
        )
    per_token = _positive_int(
        env, "PUPIL_RECORDS_MAX_WAITING_PER_TOKEN", DEFAULT_MAX_WAITING_PER_TOKEN
    )
    return max_waiting, per_token


def _secret(env: Mapping[str, str], key: str) -> str | None:
    """Return `key` from the environment, or the first line of the file `KEY_FILE`."""
    value = env.get(key)
    if value:
        return value
    path = env.get(f"{key}_FILE")
    if not path:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigurationError(
            f"{key}_FILE={path!r} cannot be read: {error.strerror}"
        ) from None
    line = text.split("\n", 1)[0].removesuffix("\r")
    if not line:
        raise ConfigurationError(f"{key}_FILE={path!r} is empty")
    return line


def _database_url(url: str, password: str | None) -> str:
    """Return `url` with `password` set, when a password secret was given."""
    if password is None:
        return url
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    if parsed.password:
        raise ConfigurationError(
            f"the database URL for {parsed.database!r} already has a password; "
            "give it either in the URL or in the password file, not both"
        )
    return parsed.set(password=password).render_as_string(hide_password=False)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as error:
        raise ConfigurationError(
            f"PUPIL_RECORDS_TIMEZONE={name!r} is not a known IANA time zone"
        ) from error


def _origins(raw: str) -> tuple[str, ...]:
    origins = []
    for item in raw.split(","):
        origin = item.strip()
        if not origin:
            continue
        if not _ORIGIN.fullmatch(origin):
            raise ConfigurationError(
                f"PUPIL_RECORDS_CORS_ORIGINS: {origin!r} is not an origin; list "
                "each one as scheme://host[:port], e.g. https://portal.example.org "
                "(a wildcard is not accepted)"
            )
        origins.append(origin.lower())
    return tuple(origins)


def _positive_int(env: Mapping[str, str], key: str, default: int) -> int:
    return _int_setting(env, key, default, minimum=1)


def _non_negative_int(env: Mapping[str, str], key: str, default: int) -> int:
    return _int_setting(env, key, default, minimum=0)


def _int_setting(
    env: Mapping[str, str], key: str, default: int, *, minimum: int
) -> int:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigurationError(f"{key}={raw!r} is not an integer") from None
    if value < minimum:
        requirement = "positive" if minimum == 1 else f"at least {minimum}"
        raise ConfigurationError(f"{key}={raw!r} must be {requirement}")
    return value


def _positive_float(env: Mapping[str, str], key: str, default: float) -> float:
    raw = env.get(key)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{key}={raw!r} is not a number") from None
    if not value > 0:
        raise ConfigurationError(f"{key}={raw!r} must be positive")
    return value
