"""The PostgreSQL init script of docker-compose.yml, run on a real server.

The server is started from the local binaries the way the postgres image
runs it on first start: the script connects over the Unix socket as the
superuser, and the services connect over TCP with SCRAM passwords.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest
import yaml
from sqlalchemy import text
from sqlalchemy.engine import make_url

from services.records.application import RecordsApplication
from services.records.keys import load_master_key
from shared.config import Settings
from shared.storage import create_sql_engine
from tests import pg_server

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
INIT_SCRIPT = ROOT / "docker" / "postgres-init" / "10-create-service-databases.sh"
SUPERUSER = "postgres"
# A `${NAME:-default}` reference of the compose file.
INTERPOLATION = re.compile(r"\$\{[A-Za-z_][A-Za-z0-9_]*:-(?P<default>[^}]*)\}")

# The records password ends with CRLF in its file, as an editor on Windows
# would save it, and contains characters that SQL and URLs must quote.
SECRET_FILES = {
    "records_db_password": "it's a \\ pass:word@1\r\n",
    "archive_db_password": "archive-password-2\n",
    "master_key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
}
PASSWORDS = {
    "records_db_password": "it's a \\ pass:word@1",
    "archive_db_password": "archive-password-2",
}


@dataclass(frozen=True)
class Cluster:
    """A throwaway server: its socket folder, TCP port and binaries."""

    socket_dir: Path
    port: int
    bin_dir: Path


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _run_as(command: list[str], user: str | None, check: bool = True) -> None:
    if user:
        command = ["runuser", "-u", user, "--", *command]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if check:
        assert result.returncode == 0, result.stderr or result.stdout


def write_secrets(folder: Path, files: dict[str, str]) -> Path:
    """Write secret files byte for byte into `folder` and return it."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
        (folder / name).write_bytes(content.encode("utf-8"))
    return folder


def run_init_script(
    secrets_dir: Path, socket_dir: Path, port: int, bin_dir: Path
) -> subprocess.CompletedProcess[str]:
    """Run the init script with the variables the postgres image provides."""
    env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PGHOST": str(socket_dir),
        "PGPORT": str(port),
        "POSTGRES_USER": SUPERUSER,
        "POSTGRES_DB": "postgres",
        "PUPIL_RECORDS_SECRETS_DIR": str(secrets_dir),
    }
    return subprocess.run(
        ["bash", str(INIT_SCRIPT)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.fixture(scope="module")
def secrets_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_secrets(tmp_path_factory.mktemp("secrets"), SECRET_FILES)


@pytest.fixture(scope="module")
def cluster(secrets_dir: Path) -> Iterator[Cluster]:
    """A server with SCRAM authentication on TCP, after the init script ran."""
    bin_dir = pg_server.find_binaries()
    user = "nobody" if os.geteuid() == 0 else None
    # A short path, because a Unix socket path may not exceed about 100 bytes.
    root = Path(tempfile.mkdtemp(prefix="pr-initdb-"))
    if user:
        shutil.chown(root, user=user)
    root.chmod(0o700)
    data, port = root / "data", _free_port()
    pg_ctl = [str(bin_dir / "pg_ctl"), "-D", str(data)]
    initdb = [str(bin_dir / "initdb"), "-D", str(data), "-U", SUPERUSER]
    initdb += ["-E", "UTF8", "--no-locale"]
    initdb += ["--auth-local=trust", "--auth-host=scram-sha-256"]
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off"

    try:
        _run_as(initdb, user)
        _run_as([*pg_ctl, "-w", "-l", str(root / "log"), "-o", options, "start"], user)
        result = run_init_script(secrets_dir, root, port, bin_dir)
        assert result.returncode == 0, result.stderr
        yield Cluster(root, port, bin_dir)
    finally:
        _run_as([*pg_ctl, "-m", "immediate", "stop"], user, check=False)
        shutil.rmtree(root, ignore_errors=True)


def superuser_query(cluster: Cluster, sql: str) -> list[tuple[Any, ...]]:
    """Run `sql` as the superuser over the socket, as the init script does."""
    with psycopg.connect(
        host=str(cluster.socket_dir),
        port=cluster.port,
        user=SUPERUSER,
        dbname="postgres",
    ) as connection:
        return connection.execute(sql).fetchall()


def compose_settings(secrets_dir: Path, service: str) -> Settings:
    """Return a compose service's settings, read from the test's secret files.

    Each `${NAME:-default}` reference gets its default.
    """
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))
    environment = {
        name: INTERPOLATION.sub(r"\g<default>", str(value))
        for name, value in compose["services"][service]["environment"].items()
    }
    for name, value in list(environment.items()):
        if name.endswith("_FILE") and value.startswith("/run/secrets/"):
            environment[name] = str(secrets_dir / value.rsplit("/", 1)[1])
    return Settings.from_env(environment)


def compose_urls(secrets_dir: Path, cluster: Cluster) -> dict[str, str]:
    """Return the database URL of each service, as its settings build it.

    The host and port of the `postgres` service become the test server's.
    """
    urls = {}
    records = compose_settings(secrets_dir, "records-web").records_database_url
    archive = compose_settings(secrets_dir, "archive-web").archive_database_url
    for service, url in (("records-web", records), ("archive-web", archive)):
        local = make_url(url).set(host="127.0.0.1", port=cluster.port)
        urls[service] = local.render_as_string(hide_password=False)
    return urls


@pytest.fixture(scope="module")
def urls(secrets_dir: Path, cluster: Cluster) -> dict[str, str]:
    return compose_urls(secrets_dir, cluster)


@pytest.mark.parametrize(
    ("service", "user", "database"),
    [("records-web", "records", "records"), ("archive-web", "archive", "archive")],
)
def test_service_logs_in_with_its_secret(
    urls: dict[str, str], service: str, user: str, database: str
) -> None:
    engine = create_sql_engine(urls[service])
    try:
        with engine.connect() as connection:
            row = connection.execute(
                text("SELECT current_user, current_database()")
            ).one()
    finally:
        engine.dispose()
    assert tuple(row) == (user, database)


def test_wrong_password_is_rejected(urls: dict[str, str]) -> None:
    wrong = make_url(urls["records-web"]).set(password="not-the-password")
    with pytest.raises(psycopg.OperationalError, match="password authentication"):
        psycopg.connect(
            host=wrong.host,
            port=wrong.port,
            user=wrong.username,
            password=wrong.password,
            dbname=wrong.database,
            connect_timeout=5,
        ).close()


@pytest.mark.parametrize(
    ("service", "other_database"),
    [("records-web", "archive"), ("archive-web", "records")],
)
def test_service_cannot_open_other_database(
    urls: dict[str, str], service: str, other_database: str
) -> None:
    url = make_url(urls[service])
    with pytest.raises(psycopg.OperationalError, match="permission denied"):
        psycopg.connect(
            host=url.host,
            port=url.port,
            user=url.username,
            password=url.password,
            dbname=other_database,
            connect_timeout=5,
        ).close()


def test_each_database_has_its_owner(cluster: Cluster) -> None:
    rows = superuser_query(
        cluster,
        "SELECT datname, pg_get_userbyid(datdba) FROM pg_database "
        "WHERE datname IN ('records', 'archive') ORDER BY datname",
    )
    assert rows == [("archive", "archive"), ("records", "records")]


def test_service_roles_are_not_superusers(cluster: Cluster) -> None:
    rows = superuser_query(
        cluster,
        "SELECT rolname, rolsuper, rolcreatedb, rolcreaterole FROM pg_roles "
        "WHERE rolname IN ('records', 'archive') ORDER BY rolname",
    )
    assert rows == [("archive", False, False, False), ("records", False, False, False)]


def test_records_application_creates_its_tables(
    urls: dict[str, str], secrets_dir: Path
) -> None:
    master_key = load_master_key(compose_settings(secrets_dir, "records-web"))
    application = RecordsApplication(urls["records-web"], master_key=master_key)
    application.close()
    query = text("SELECT tableowner FROM pg_tables WHERE tablename = 'records_events'")
    engine = create_sql_engine(urls["records-web"])
    try:
        with engine.connect() as connection:
            owners = connection.execute(query).scalars().all()
    finally:
        engine.dispose()
    assert owners == ["records"]


@pytest.mark.parametrize(
    ("files", "problem"),
    [
        ({"records_db_password": "pw\n"}, "cannot read the secret file"),
        ({"records_db_password": "\n", "archive_db_password": "pw\n"}, "is empty"),
        ({"records_db_password": "a\nb\n", "archive_db_password": "p"}, "single line"),
    ],
)
def test_bad_secret_stops_before_psql(
    tmp_path: Path, files: dict[str, str], problem: str
) -> None:
    secrets_dir = write_secrets(tmp_path / "secrets", files)
    # Nothing listens on this socket folder: psql would fail with its own message.
    result = run_init_script(
        secrets_dir, tmp_path / "no-server", _free_port(), pg_server.find_binaries()
    )
    assert result.returncode != 0
    assert problem in result.stderr
    assert "psql" not in result.stderr
