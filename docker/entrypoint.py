#!/usr/bin/env python3
"""Container entry point: move secrets from files into the environment, then exec.

Compose and Swarm deliver secrets as files under /run/secrets, while the
services read their settings from environment variables. For each variable
below that is set, this script reads the named file, sets the setting and
removes the `*_FILE` variable. Then it replaces itself with the command
(`exec`), so that the command receives the container's signals:

- `ARCHIVE_FEED_TOKEN_FILE` sets `ARCHIVE_FEED_TOKEN` to the file's content;
- `RECORDS_DATABASE_PASSWORD_FILE` and `ARCHIVE_DATABASE_PASSWORD_FILE` put
  the password into `RECORDS_DATABASE_URL` and `ARCHIVE_DATABASE_URL`, which
  must name the user but no password.

A secret file contains one line. Trailing line feeds and then one carriage
return are ignored, as in the PostgreSQL init script in docker/postgres-init.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

PROGRAM = "pupil-records-entrypoint"

# `NAME_FILE` -> `NAME`: the file contains the whole value of `NAME`.
VALUE_FILE_VARIABLES: dict[str, str] = {
    "ARCHIVE_FEED_TOKEN_FILE": "ARCHIVE_FEED_TOKEN",
}
# Password file variable -> the database URL variable that gets the password.
PASSWORD_FILE_VARIABLES: dict[str, str] = {
    "RECORDS_DATABASE_PASSWORD_FILE": "RECORDS_DATABASE_URL",
    "ARCHIVE_DATABASE_PASSWORD_FILE": "ARCHIVE_DATABASE_URL",
}
SECRET_FILE_VARIABLES: tuple[str, ...] = (
    *VALUE_FILE_VARIABLES,
    *PASSWORD_FILE_VARIABLES,
)


class SecretFileError(Exception):
    """A secret file or the variable that names it is unusable."""


def read_secret(path: str, variable: str) -> str:
    """Read the one-line secret in `path`, named by the environment `variable`."""
    try:
        with open(path, encoding="utf-8", newline="") as stream:
            content = stream.read()
    except OSError as error:
        raise SecretFileError(
            f"{variable}={path}: cannot read the secret file ({error.strerror}); "
            f"it must exist and be readable by uid {os.getuid()}"
        ) from None
    except UnicodeDecodeError:
        raise SecretFileError(f"{variable}={path}: the file is not UTF-8") from None

    value = content.rstrip("\n").removesuffix("\r")
    if not value:
        raise SecretFileError(f"{variable}={path}: the secret file is empty")
    if "\n" in value or "\r" in value:
        raise SecretFileError(
            f"{variable}={path}: the secret file must hold a single line"
        )
    return value


def add_password(url: str, password: str, url_variable: str) -> str:
    """Return the database `url` with `password` set, quoted as URLs require."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise SecretFileError(f"{url_variable} is not a valid database URL") from None
    if parsed.password is not None:
        raise SecretFileError(
            f"{url_variable} already contains a password; remove it from the URL "
            "or stop setting the password file"
        )
    if not parsed.username:
        raise SecretFileError(
            f"{url_variable}={parsed.render_as_string()} names no user for the "
            "password; use postgresql://USER@HOST:PORT/DBNAME"
        )
    return parsed.set(password=password).render_as_string(hide_password=False)


def resolve_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """Return a copy of `environ` with every secret file variable resolved."""
    env = dict(environ)
    for file_variable, target in VALUE_FILE_VARIABLES.items():
        path = env.pop(file_variable, "")
        if not path:
            continue
        if env.get(target):
            raise SecretFileError(
                f"both {target} and {file_variable} are set; set only one of them"
            )
        env[target] = read_secret(path, file_variable)

    for file_variable, url_variable in PASSWORD_FILE_VARIABLES.items():
        path = env.pop(file_variable, "")
        if not path:
            continue
        url = env.get(url_variable, "")
        if not url:
            raise SecretFileError(
                f"{file_variable} is set but {url_variable} is not; set the "
                "database URL without its password"
            )
        password = read_secret(path, file_variable)
        env[url_variable] = add_password(url, password, url_variable)
    return env


def main(argv: Sequence[str]) -> int:
    """Resolve the secret files and exec `argv`; return an exit code on failure."""
    if not argv:
        print(f"{PROGRAM}: error: no command given", file=sys.stderr)
        return 2
    try:
        env = resolve_environment(os.environ)
    except SecretFileError as error:
        print(f"{PROGRAM}: error: {error}", file=sys.stderr)
        return 1
    try:
        os.execvpe(argv[0], list(argv), env)
    except OSError as error:
        print(
            f"{PROGRAM}: error: cannot run {argv[0]!r}: {error.strerror}",
            file=sys.stderr,
        )
        return 127
    return 0  # not reached: a successful exec never returns


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
