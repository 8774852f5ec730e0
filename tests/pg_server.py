"""A throwaway PostgreSQL server for tests, started from the local binaries.

`initdb` refuses to run as root, so as root the server runs as the `nobody`
user in a data directory that user owns. The server listens on 127.0.0.1 only,
on a free port, with trust authentication, and is removed at the end.
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

SUPERUSER = "postgres"
# A test run creates a few GB of short-lived databases, so the server keeps
# them in RAM when there is room: removing 300 of them (2.2 GB) took 2 s there
# and 104 s on the disk of the 2-core development machine.
RAM_FOLDER = Path("/dev/shm")
RAM_FOLDER_MIN_FREE_BYTES = 8 * 1024**3


class PostgresUnavailableError(RuntimeError):
    """The PostgreSQL server binaries are missing or the server failed to start."""


def find_binaries() -> Path:
    """Return the folder that holds `initdb` and `pg_ctl`."""
    found = shutil.which("initdb")
    if found:
        return Path(found).parent
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if Path(folder, "initdb").exists():
            return Path(folder)
    raise PostgresUnavailableError(
        "PostgreSQL server binaries (initdb, pg_ctl) were not found on PATH or in "
        "/usr/lib/postgresql/*/bin; install PostgreSQL 15 (e.g. apt-get install "
        "postgresql) to run the PostgreSQL tests"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """A running throwaway server; `create_database()` gives a fresh URL."""

    port: int
    data_dir: Path
    bin_dir: Path
    as_user: str | None

    def url(self, database: str) -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self, prefix: str = "t") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.url("postgres"), autocommit=True) as connection:
            # PostgreSQL 15 copies the template through the WAL by default,
            # which took 0.2 s per database on two cores; a file copy, 0.03 s.
            strategy = " STRATEGY = FILE_COPY"
            if connection.info.server_version < 150000:
                strategy = ""
            connection.execute(f'CREATE DATABASE "{name}"{strategy}')
        return self.url(name)

    def stop(self, mode: str = "fast") -> None:
        self._pg_ctl("stop", "-m", mode, check=False)

    def start(self) -> None:
        self._pg_ctl(
            "start",
            "-w",
            "-l",
            str(self.data_dir.parent / "server.log"),
            "-o",
            f"-p {self.port} -c listen_addresses=127.0.0.1 "
            f"-k {self.data_dir.parent} -c max_connections=300 -c fsync=off",
        )

    def _pg_ctl(self, *args: str, check: bool = True) -> None:
        command = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *args]
        _run(command, self.as_user, check=check)


def _run(command: list[str], as_user: str | None, check: bool = True) -> None:
    if as_user:
        command = ["runuser", "-u", as_user, "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        output = result.stderr.strip() or result.stdout.strip()
        raise PostgresUnavailableError(f"{' '.join(command)} failed: {output}")


def _scratch_folder() -> str | None:
    """Return the RAM-backed folder when it has room, else None for the default."""
    try:
        if shutil.disk_usage(RAM_FOLDER).free >= RAM_FOLDER_MIN_FREE_BYTES:
            return str(RAM_FOLDER)
    except OSError:
        pass
    return None


def start_server() -> PostgresServer:
    """Initialise and start a throwaway server on a free local port."""
    bin_dir = find_binaries()
    as_user = "nobody" if os.geteuid() == 0 else None
    root = Path(tempfile.mkdtemp(prefix="pupil-records-pg-", dir=_scratch_folder()))
    data_dir = root / "data"
    if as_user:
        shutil.chown(root, user=as_user)
        root.chmod(0o700)
    _run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data_dir),
            "-U",
            SUPERUSER,
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--no-locale",
        ],
        as_user,
    )
    server = PostgresServer(_free_port(), data_dir, bin_dir, as_user)
    server.start()
    deadline = time.monotonic() + 30
    while True:
        try:
            psycopg.connect(server.url("postgres"), connect_timeout=2).close()
            return server
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def remove_server(server: PostgresServer) -> None:
    server.stop("immediate")
    shutil.rmtree(server.data_dir.parent, ignore_errors=True)
