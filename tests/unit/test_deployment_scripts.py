"""The image's scripts: the secret-resolving entry point and the health check."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy.engine import make_url

from shared.storage import eventsourcing_env

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT_FILE = ROOT / "docker" / "entrypoint.py"
HEALTHCHECK_FILE = ROOT / "docker" / "healthcheck.py"
RECORDS_URL = "postgresql://records@postgres:5432/records"
ARCHIVE_URL = "postgresql://archive@postgres:5432/archive"


def load_script(path: Path) -> ModuleType:
    """Import a script of docker/ as a module."""
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def entrypoint() -> ModuleType:
    return load_script(ENTRYPOINT_FILE)


@pytest.fixture(scope="module")
def healthcheck() -> ModuleType:
    return load_script(HEALTHCHECK_FILE)


def write_secret(folder: Path, name: str, content: str) -> str:
    """Write a secret file byte for byte and return its path."""
    path = folder / name
    path.write_bytes(content.encode("utf-8"))
    return str(path)


# ------------------------------------------------------------- entry point


def test_token_file_sets_the_token(entrypoint: ModuleType, tmp_path: Path) -> None:
    path = write_secret(tmp_path, "token", "abc-123\n")
    env = entrypoint.resolve_environment({"ARCHIVE_FEED_TOKEN_FILE": path})
    assert env["ARCHIVE_FEED_TOKEN"] == "abc-123"
    assert "ARCHIVE_FEED_TOKEN_FILE" not in env


def test_unset_file_variables_change_nothing(entrypoint: ModuleType) -> None:
    environ = {"RECORDS_DATABASE_URL": RECORDS_URL, "PATH": "/usr/bin"}
    assert entrypoint.resolve_environment(environ) == environ


def test_empty_file_variable_is_ignored(entrypoint: ModuleType) -> None:
    env = entrypoint.resolve_environment({"ARCHIVE_FEED_TOKEN_FILE": ""})
    assert env == {}


def test_token_and_its_file_conflict(entrypoint: ModuleType, tmp_path: Path) -> None:
    path = write_secret(tmp_path, "token", "abc\n")
    environ = {"ARCHIVE_FEED_TOKEN": "other", "ARCHIVE_FEED_TOKEN_FILE": path}
    with pytest.raises(entrypoint.SecretFileError, match="set only one"):
        entrypoint.resolve_environment(environ)


@pytest.mark.parametrize(
    "password",
    ["plain", "p@ss:w/rd", "50% off?#&=", "quote'\"back\\slash", "пароль пробел"],
)
def test_password_round_trips_through_url(
    entrypoint: ModuleType, tmp_path: Path, password: str
) -> None:
    path = write_secret(tmp_path, "password", password + "\n")
    env = entrypoint.resolve_environment(
        {"RECORDS_DATABASE_URL": RECORDS_URL, "RECORDS_DATABASE_PASSWORD_FILE": path}
    )
    url = env["RECORDS_DATABASE_URL"]
    assert make_url(url).password == password
    store = eventsourcing_env(url)
    assert store["POSTGRES_PASSWORD"] == password
    assert store["POSTGRES_USER"] == "records"
    assert store["POSTGRES_HOST"] == "postgres"
    assert store["POSTGRES_DBNAME"] == "records"
    assert "RECORDS_DATABASE_PASSWORD_FILE" not in env


def test_each_url_gets_its_own_password(entrypoint: ModuleType, tmp_path: Path) -> None:
    environ = {
        "RECORDS_DATABASE_URL": RECORDS_URL,
        "RECORDS_DATABASE_PASSWORD_FILE": write_secret(tmp_path, "r", "one\n"),
        "ARCHIVE_DATABASE_URL": ARCHIVE_URL,
        "ARCHIVE_DATABASE_PASSWORD_FILE": write_secret(tmp_path, "a", "two\n"),
    }
    env = entrypoint.resolve_environment(environ)
    assert make_url(env["RECORDS_DATABASE_URL"]).password == "one"
    assert make_url(env["ARCHIVE_DATABASE_URL"]).password == "two"


def test_query_of_url_is_kept(entrypoint: ModuleType, tmp_path: Path) -> None:
    environ = {
        "RECORDS_DATABASE_URL": RECORDS_URL + "?schema=records",
        "RECORDS_DATABASE_PASSWORD_FILE": write_secret(tmp_path, "p", "pw\n"),
    }
    url = entrypoint.resolve_environment(environ)["RECORDS_DATABASE_URL"]
    assert eventsourcing_env(url)["POSTGRES_SCHEMA"] == "records"


def test_password_needs_the_url(entrypoint: ModuleType, tmp_path: Path) -> None:
    environ = {"ARCHIVE_DATABASE_PASSWORD_FILE": write_secret(tmp_path, "p", "pw\n")}
    with pytest.raises(entrypoint.SecretFileError, match="ARCHIVE_DATABASE_URL"):
        entrypoint.resolve_environment(environ)


def test_url_with_password_is_rejected(entrypoint: ModuleType, tmp_path: Path) -> None:
    environ = {
        "RECORDS_DATABASE_URL": "postgresql://records:old@postgres/records",
        "RECORDS_DATABASE_PASSWORD_FILE": write_secret(tmp_path, "p", "new\n"),
    }
    with pytest.raises(entrypoint.SecretFileError, match="already contains") as error:
        entrypoint.resolve_environment(environ)
    assert "old" not in str(error.value)
    assert "new" not in str(error.value)


def test_url_without_user_is_rejected(entrypoint: ModuleType, tmp_path: Path) -> None:
    environ = {
        "RECORDS_DATABASE_URL": "postgresql://postgres:5432/records",
        "RECORDS_DATABASE_PASSWORD_FILE": write_secret(tmp_path, "p", "pw\n"),
    }
    with pytest.raises(entrypoint.SecretFileError, match="names no user"):
        entrypoint.resolve_environment(environ)


def test_invalid_url_is_rejected(entrypoint: ModuleType, tmp_path: Path) -> None:
    environ = {
        "RECORDS_DATABASE_URL": "not a url",
        "RECORDS_DATABASE_PASSWORD_FILE": write_secret(tmp_path, "p", "pw\n"),
    }
    with pytest.raises(entrypoint.SecretFileError, match="not a valid database URL"):
        entrypoint.resolve_environment(environ)


@pytest.mark.parametrize(
    ("content", "value"),
    [
        ("secret", "secret"),
        ("secret\n", "secret"),
        ("secret\r\n", "secret"),
        ("secret\n\n", "secret"),
        ("secret\r", "secret"),
        ("  spaced  \n", "  spaced  "),
    ],
)
def test_secret_line_endings_are_ignored(
    entrypoint: ModuleType, tmp_path: Path, content: str, value: str
) -> None:
    path = write_secret(tmp_path, "secret", content)
    assert entrypoint.read_secret(path, "X_FILE") == value


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        ("", "is empty"),
        ("\n", "is empty"),
        ("\r\n", "is empty"),
        ("first\nsecond\n", "single line"),
        ("first\rsecond", "single line"),
    ],
)
def test_bad_secret_file_is_rejected(
    entrypoint: ModuleType, tmp_path: Path, content: str, problem: str
) -> None:
    path = write_secret(tmp_path, "secret", content)
    with pytest.raises(entrypoint.SecretFileError, match=problem) as error:
        entrypoint.read_secret(path, "X_FILE")
    assert "second" not in str(error.value)


def test_missing_secret_file_is_named(entrypoint: ModuleType, tmp_path: Path) -> None:
    path = str(tmp_path / "absent")
    with pytest.raises(entrypoint.SecretFileError) as error:
        entrypoint.read_secret(path, "ARCHIVE_FEED_TOKEN_FILE")
    message = str(error.value)
    assert "ARCHIVE_FEED_TOKEN_FILE" in message
    assert path in message
    assert "cannot read" in message


def run_entrypoint(
    arguments: list[str], env: dict[str, str]
) -> subprocess.CompletedProcess[str]:
    """Run docker/entrypoint.py as the container would, with this interpreter."""
    return subprocess.run(
        [sys.executable, str(ENTRYPOINT_FILE), *arguments],
        env={"PATH": os.environ.get("PATH", ""), **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_entrypoint_execs_with_resolved_env(tmp_path: Path) -> None:
    path = write_secret(tmp_path, "token", "from-the-file\n")
    show = (
        "import os; print(os.environ['ARCHIVE_FEED_TOKEN']); "
        "print('ARCHIVE_FEED_TOKEN_FILE' in os.environ)"
    )
    result = run_entrypoint(
        [sys.executable, "-c", show], {"ARCHIVE_FEED_TOKEN_FILE": path}
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["from-the-file", "False"]


def test_entrypoint_passes_exit_code(tmp_path: Path) -> None:
    result = run_entrypoint([sys.executable, "-c", "raise SystemExit(7)"], {})
    assert result.returncode == 7


def test_entrypoint_reports_bad_secret(tmp_path: Path) -> None:
    result = run_entrypoint(
        ["true"], {"ARCHIVE_FEED_TOKEN_FILE": str(tmp_path / "absent")}
    )
    assert result.returncode == 1
    assert "ARCHIVE_FEED_TOKEN_FILE" in result.stderr
    assert result.stderr.startswith("pupil-records-entrypoint: error:")


def test_entrypoint_needs_a_command() -> None:
    result = run_entrypoint([], {})
    assert result.returncode == 2
    assert "no command" in result.stderr


def test_entrypoint_reports_unknown_command() -> None:
    result = run_entrypoint(["no-such-command-for-tests"], {})
    assert result.returncode == 127
    assert "no-such-command-for-tests" in result.stderr


@pytest.mark.parametrize("path", [ENTRYPOINT_FILE, HEALTHCHECK_FILE])
def test_script_is_executable(path: Path) -> None:
    assert os.access(path, os.X_OK)
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    assert first_line == "#!/usr/bin/env python3"


# ------------------------------------------------------------ health check


class _Handler(BaseHTTPRequestHandler):
    statuses = {"/healthz": 200, "/readyz": 503, "/moved": 302}

    def do_GET(self) -> None:
        status = self.statuses.get(self.path, 404)
        self.send_response(status)
        if status == 302:
            self.send_header("Location", "/readyz")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def server_url() -> Iterator[str]:
    """The base URL of a local HTTP server with a fixed status per path."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_healthy_url_exits_zero(healthcheck: ModuleType, server_url: str) -> None:
    assert healthcheck.main([server_url + "/healthz"]) == 0


@pytest.mark.parametrize("path", ["/readyz", "/missing", "/moved"])
def test_unhealthy_status_exits_one(
    healthcheck: ModuleType,
    server_url: str,
    path: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert healthcheck.main([server_url + path]) == 1
    assert "returned HTTP" in capsys.readouterr().err


def test_closed_port_exits_one(
    healthcheck: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    assert healthcheck.main([f"http://127.0.0.1:{port}/healthz", "--timeout", "2"]) == 1
    assert "did not respond" in capsys.readouterr().err


@pytest.mark.parametrize(
    "arguments",
    [
        ["ftp://127.0.0.1/healthz"],
        ["file:///etc/passwd"],
        ["http://x", "--timeout", "0"],
    ],
)
def test_bad_arguments_are_usage_errors(
    healthcheck: ModuleType, arguments: list[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        healthcheck.main(arguments)
    assert exit_info.value.code == 2
