"""Scripts under docker/: the secret generator and the health check."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType

import pytest

from services.records.keys import load_master_key
from shared.config import Settings

ROOT = Path(__file__).resolve().parents[2]
INIT_SECRETS = ROOT / "docker" / "init-secrets.sh"
HEALTHCHECK_FILE = ROOT / "docker" / "healthcheck.py"
# The uid and gid of the image's user, which must own the master key file.
SERVICE_OWNER = "10001:10001"
# The user that root drops to, to run the generator without root.
UNPRIVILEGED_ID = 65534


def load_script(path: Path) -> ModuleType:
    """Import a script of docker/ as a module."""
    spec = importlib.util.spec_from_file_location(f"script_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def healthcheck() -> ModuleType:
    return load_script(HEALTHCHECK_FILE)


# ----------------------------------------------------------- secret files


def run_init_secrets(
    folder: Path,
    key_owner: str | None = None,
    prefix: tuple[str, ...] = (),
    script: Path = INIT_SECRETS,
) -> subprocess.CompletedProcess[str]:
    """Run docker/init-secrets.sh (or its copy `script`) on `folder`.

    `prefix` comes before the command. `key_owner` (UID:GID) is the master
    key's owner. Unset, it is the default of the script, the image's user.
    """
    env = {"PATH": os.environ.get("PATH", "")}
    if key_owner is not None:
        env["PUPIL_RECORDS_KEY_OWNER"] = key_owner
    return subprocess.run(
        [*prefix, "sh", str(script), str(folder)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def own_id() -> str:
    """Return the UID:GID of the user who runs the tests."""
    return f"{os.getuid()}:{os.getgid()}"


def file_owner(path: Path) -> str:
    info = path.stat()
    return f"{info.st_uid}:{info.st_gid}"


def production_key_settings(key_file: Path) -> Settings:
    """Return production settings that read the master key from `key_file`."""
    environ = {
        "PUPIL_RECORDS_ENV": "production",
        "PUPIL_RECORDS_MASTER_KEY_FILE": str(key_file),
    }
    return Settings.from_env(environ, data_dir=key_file.parent / "data")


@pytest.fixture
def unprivileged_folder() -> Iterator[tuple[Path, tuple[str, ...], str]]:
    """A secrets folder, the command prefix that runs without root, and its user.

    Root drops to an unprivileged uid with setpriv; any other user runs as is.
    """
    if os.geteuid() != 0:
        if own_id() == SERVICE_OWNER:
            pytest.skip("the tests run as the image's user, who owns the key")
        root = Path(tempfile.mkdtemp(prefix="pr-secrets-"))
        yield root / "secrets", (), own_id()
    else:
        if shutil.which("setpriv") is None:
            pytest.skip("running the generator without root needs setpriv")
        root = Path(tempfile.mkdtemp(prefix="pr-secrets-"))
        # The checkout may sit in a folder only root can read, so the user
        # runs a copy of the script kept in its own folder.
        shutil.copy(INIT_SECRETS, root / INIT_SECRETS.name)
        os.chown(root, UNPRIVILEGED_ID, UNPRIVILEGED_ID)
        prefix = (
            "setpriv",
            f"--reuid={UNPRIVILEGED_ID}",
            f"--regid={UNPRIVILEGED_ID}",
            "--clear-groups",
        )
        yield root / "secrets", prefix, f"{UNPRIVILEGED_ID}:{UNPRIVILEGED_ID}"
    shutil.rmtree(root, ignore_errors=True)


def test_master_key_is_a_valid_key(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    result = run_init_secrets(folder, key_owner=own_id())
    assert result.returncode == 0, result.stderr

    key_file = folder / "master_key"
    content = key_file.read_text(encoding="ascii")
    assert content.endswith("\n")
    assert content.count("\n") == 1
    key = load_master_key(production_key_settings(key_file))
    assert key.to_base64() == content.strip()


def test_master_key_file_is_private(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    run_init_secrets(folder, key_owner=own_id())
    key_file = folder / "master_key"
    assert key_file.stat().st_mode & 0o777 == 0o400
    assert file_owner(key_file) == own_id()
    assert [path.name for path in folder.iterdir() if path.name.startswith(".")] == []


def test_each_folder_gets_a_new_key(tmp_path: Path) -> None:
    keys = set()
    for name in ("first", "second"):
        run_init_secrets(tmp_path / name, key_owner=own_id())
        keys.add((tmp_path / name / "master_key").read_text(encoding="ascii"))
    assert len(keys) == 2


def test_existing_master_key_is_never_replaced(tmp_path: Path) -> None:
    # A key restored from a backup stays byte for byte, even a malformed one:
    # the records service reports that one at start.
    folder = tmp_path / "secrets"
    folder.mkdir()
    key_file = folder / "master_key"
    key_file.write_bytes(b"restored key\r\n")
    key_file.chmod(0o400)

    result = run_init_secrets(folder, key_owner=own_id())

    assert result.returncode == 0, result.stderr
    assert f"kept {key_file}" in result.stdout
    assert key_file.read_bytes() == b"restored key\r\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
def test_root_gives_the_key_to_the_service(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    result = run_init_secrets(folder)
    key_file = folder / "master_key"

    assert result.returncode == 0, result.stderr
    assert file_owner(key_file) == SERVICE_OWNER
    assert key_file.stat().st_mode & 0o777 == 0o400
    assert file_owner(folder / "records_db_password") == own_id()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a file away")
def test_root_fixes_a_restored_key(tmp_path: Path) -> None:
    folder = tmp_path / "secrets"
    folder.mkdir()
    key_file = folder / "master_key"
    key_file.write_text("restored\n", encoding="ascii")
    key_file.chmod(0o644)

    result = run_init_secrets(folder)

    assert result.returncode == 0, result.stderr
    assert file_owner(key_file) == SERVICE_OWNER
    assert key_file.stat().st_mode & 0o777 == 0o400
    assert key_file.read_text(encoding="ascii") == "restored\n"


def test_without_root_the_script_prints_chown(
    unprivileged_folder: tuple[Path, tuple[str, ...], str],
) -> None:
    folder, prefix, user = unprivileged_folder
    script = folder.parent / INIT_SECRETS.name
    result = run_init_secrets(
        folder, prefix=prefix, script=script if script.exists() else INIT_SECRETS
    )
    key_file = folder / "master_key"

    assert result.returncode == 1
    assert f"sudo chown {SERVICE_OWNER} '{key_file}'" in result.stderr
    assert f"belongs to {user}" in result.stderr
    # Everything else was created, so the command is the only step left.
    names = {path.name for path in folder.iterdir()}
    assert "records_db_password" in names
    assert "archive_feed_token" in names
    assert file_owner(key_file) == user


@pytest.mark.parametrize("owner", ["pupil", "10001", "10001:", ":10001", "1:2:3"])
def test_invalid_key_owner_is_rejected(tmp_path: Path, owner: str) -> None:
    folder = tmp_path / "secrets"
    result = run_init_secrets(folder, key_owner=owner)
    assert result.returncode == 2
    assert "PUPIL_RECORDS_KEY_OWNER" in result.stderr
    assert not folder.exists()


@pytest.mark.parametrize("path", [INIT_SECRETS, HEALTHCHECK_FILE])
def test_script_is_executable(path: Path) -> None:
    assert os.access(path, os.X_OK)
    first_line = path.read_text(encoding="utf-8").splitlines()[0]
    assert first_line.startswith("#!/")


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
