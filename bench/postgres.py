"""The PostgreSQL server the benchmarks use: a throwaway one, or one given by URL.

The throwaway server is started from the local binaries (`initdb`, `pg_ctl`)
in a temporary folder, on 127.0.0.1 and a free port, with PostgreSQL's default
durability (`fsync` and `synchronous_commit` on), because commit cost is what
the write benchmarks measure. As root it runs as `nobody`, since `initdb`
refuses to run as root.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import psycopg
from sqlalchemy.engine import make_url

SUPERUSER = "postgres"
START_TIMEOUT_SECONDS = 60.0
# The four processes and the benchmark's own pools together stay far below it.
MAX_CONNECTIONS = 300


class PostgresUnavailableError(RuntimeError):
    """No PostgreSQL server could be started or reached."""


@dataclass
class PostgresServer:
    """A server on which fresh databases are created; `stop()` removes a throwaway."""

    admin_url: str
    data_dir: Path | None = None
    bin_dir: Path | None = None
    as_user: str | None = None

    def create_database(self, prefix: str) -> str:
        """Create an empty database and return its URL."""
        name = f"{prefix}_{uuid.uuid4().hex[:10]}"
        with psycopg.connect(self.admin_url, autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')
        url = make_url(self.admin_url).set(database=name)
        return url.render_as_string(hide_password=False)

    def version(self) -> str:
        """Return the server's version string, e.g. `15.18`."""
        with psycopg.connect(self.admin_url) as connection:
            row = connection.execute("SHOW server_version").fetchone()
        return str(row[0]) if row else "unknown"

    def postmaster_pid(self) -> int | None:
        """Return the pid of a throwaway server's main process, else None."""
        if self.data_dir is None:
            return None
        try:
            first = (self.data_dir / "postmaster.pid").read_text().split("\n", 1)[0]
        except OSError:
            return None
        return int(first) if first.strip().isdigit() else None

    def stop(self) -> None:
        """Stop a throwaway server and delete its files; leave a given one alone."""
        if self.data_dir is None or self.bin_dir is None:
            return
        pg_ctl = str(self.bin_dir / "pg_ctl")
        try:
            _run([pg_ctl, "-D", str(self.data_dir), "stop", "-m", "fast"], self.as_user)
        finally:
            shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def connect_server(admin_url: str) -> PostgresServer:
    """Use an existing server; `admin_url` names a database such as `postgres`."""
    try:
        psycopg.connect(admin_url, connect_timeout=5).close()
    except psycopg.Error as error:
        raise PostgresUnavailableError(
            f"cannot connect to {make_url(admin_url).render_as_string()}: {error}"
        ) from None
    return PostgresServer(admin_url)


def start_server() -> PostgresServer:
    """Initialise and start a throwaway server; call `stop()` when done."""
    bin_dir = _find_binaries()
    as_user = "nobody" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="pupil-records-bench-pg-"))
    if as_user:
        shutil.chown(root, user=as_user)
        root.chmod(0o700)
    data_dir = root / "data"
    initdb = [str(bin_dir / "initdb"), "-D", str(data_dir), "-U", SUPERUSER]
    _run([*initdb, "-A", "trust", "-E", "UTF8", "--no-locale"], as_user)
    port = _free_port()
    options = (
        f"-p {port} -c listen_addresses=127.0.0.1 -k {root} "
        f"-c max_connections={MAX_CONNECTIONS}"
    )
    log_file = str(root / "server.log")
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data_dir)]
    _run([*pg_ctl, "start", "-w", "-l", log_file, "-o", options], as_user)
    server = PostgresServer(
        f"postgresql://{SUPERUSER}@127.0.0.1:{port}/postgres",
        data_dir,
        bin_dir,
        as_user,
    )
    _wait_until_accepting(server)
    return server


def _wait_until_accepting(server: PostgresServer) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while True:
        try:
            psycopg.connect(server.admin_url, connect_timeout=2).close()
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                server.stop()
                raise PostgresUnavailableError(
                    f"the PostgreSQL server did not accept connections within "
                    f"{START_TIMEOUT_SECONDS:.0f} s"
                ) from None
            time.sleep(0.2)


def _find_binaries() -> Path:
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(folder, "initdb").exists():
            return Path(folder)
    raise PostgresUnavailableError(
        "the PostgreSQL server binaries (initdb, pg_ctl) are not on PATH or in "
        "/usr/lib/postgresql/*/bin: install PostgreSQL, give a server with "
        "--postgres-url, or run only SQLite with --engines sqlite"
    )


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run(command: list[str], as_user: str | None) -> None:
    if as_user:
        command = ["runuser", "-u", as_user, "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        output = result.stderr.strip() or result.stdout.strip()
        raise PostgresUnavailableError(f"{' '.join(command)} failed: {output}")
