"""`pupil-records run` as a user starts it: URLs, tokens, locks, signals."""

from __future__ import annotations

import os
import re
import signal
import stat
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
import requests

from services import runner
from shared.auth import ROLES, TokenStore
from tests.e2e.helpers import (
    RunningServices,
    alive,
    free_ports,
    requires_services,
    run_cli,
    wait_until,
)

pytestmark = [pytest.mark.e2e, requires_services]


@pytest.mark.one_backend
def test_run_prints_urls(services: RunningServices) -> None:
    output = services.output()

    assert f"records service  {services.records_url}" in output
    assert f"archive service  {services.archive_url}" in output
    tokens_file = services.data_dir / runner.LOCAL_TOKENS_FILE_NAME
    assert f"local tokens     {tokens_file}" in output


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_both_services_healthy(services: RunningServices, path: str) -> None:
    records = requests.get(services.records_url + path, timeout=10)
    archive = requests.get(services.archive_url + path, timeout=10)

    assert records.status_code == 200, records.text
    assert archive.status_code == 200, archive.text


@pytest.mark.one_backend
def test_children_prefix_their_output(services: RunningServices) -> None:
    for name in ("records-web", "records-projector", "archive-web", "archive-follower"):
        prefix = re.compile(rf"^{name} +\| ", re.MULTILINE)
        # A worker may print its first line only after the webs are ready.
        wait_until(lambda p=prefix: p.search(services.output()), 30, name)
        assert (services.data_dir / "logs" / f"{name}.log").stat().st_size > 0


@pytest.mark.one_backend
def test_supervisor_logs_to_file(services: RunningServices) -> None:
    text = (services.data_dir / "logs" / "run.log").read_text(encoding="utf-8")

    assert "started records-web" in text
    assert "started archive-follower" in text
    for token in services.tokens.values():
        assert token not in text


@pytest.mark.one_backend
def test_local_tokens_private_and_valid(services: RunningServices) -> None:
    path = services.data_dir / runner.LOCAL_TOKENS_FILE_NAME
    store = TokenStore(services.data_dir / "tokens.json")

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(services.tokens) == sorted(ROLES)
    for role, token in services.tokens.items():
        principal = store.authenticate(token)
        assert principal is not None, role
        assert principal.role == role


@pytest.mark.one_backend
def test_local_admin_token_accepted(services: RunningServices) -> None:
    response = services.records.get("/api/v1/programmes", role="admin")

    assert response.status_code == 200, response.text


@pytest.mark.one_backend
def test_missing_token_rejected(services: RunningServices) -> None:
    response = services.records.get("/api/v1/programmes")

    assert response.status_code == 401
    assert response.headers["Content-Type"].startswith("application/problem+json")


@pytest.mark.one_backend
def test_issued_token_accepted_at_once(services: RunningServices) -> None:
    issued = run_cli(
        "token",
        "issue",
        "--role",
        "registrar",
        "--name",
        "Орлова Анна",
        data_dir=services.data_dir,
    )
    token = issued.stdout.strip()

    records = services.records.request("GET", "/api/v1/programmes", token=token)
    archive = services.archive.request("GET", "/api/v1/schedule", token=token)

    assert issued.returncode == 0, issued.stderr
    assert issued.stdout.count("\n") == 1
    assert records.status_code == 200, records.text
    # A registrar may not read the archive's schedule: known token, wrong role.
    assert archive.status_code == 403, archive.text


@pytest.mark.one_backend
def test_issued_archivist_token_on_archive(services: RunningServices) -> None:
    issued = run_cli(
        "token",
        "issue",
        "--name",
        "Кузнецова Вера",
        "--role",
        "archivist",
        data_dir=services.data_dir,
    )
    token = issued.stdout.strip()

    response = services.archive.request("GET", "/api/v1/schedule", token=token)

    assert issued.returncode == 0, issued.stderr
    assert response.status_code == 200, response.text


@pytest.mark.one_backend
def test_revoked_token_rejected_at_once(services: RunningServices) -> None:
    issued = run_cli(
        "token",
        "issue",
        "--role",
        "admin",
        "--name",
        "Временный Админ",
        data_dir=services.data_dir,
    )
    token = issued.stdout.strip()
    store = TokenStore(services.data_dir / "tokens.json")
    [info] = [i for i in store.list() if i.name == "Временный Админ"]

    revoked = run_cli("token", "revoke", info.id, data_dir=services.data_dir)
    response = services.records.request("GET", "/api/v1/programmes", token=token)

    assert revoked.returncode == 0, revoked.stderr
    assert response.status_code == 401


@pytest.mark.one_backend
def test_token_issue_wrong_role(services: RunningServices) -> None:
    before = len(TokenStore(services.data_dir / "tokens.json").list())

    issued = run_cli(
        "token",
        "issue",
        "--role",
        "director",
        "--name",
        "Иванов Иван",
        data_dir=services.data_dir,
    )

    assert issued.returncode == 2
    assert issued.stdout == ""
    assert "'director' is not a role" in issued.stderr
    assert "Traceback" not in issued.stderr
    assert len(TokenStore(services.data_dir / "tokens.json").list()) == before


@pytest.mark.one_backend
@pytest.mark.parametrize("service", ["records", "archive"])
def test_rebuild_refused_while_running(services: RunningServices, service: str) -> None:
    result = run_cli(service, "rebuild", data_dir=services.data_dir)

    assert result.returncode == 1
    assert "while the services run" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


@pytest.mark.one_backend
def test_second_run_refused(services: RunningServices) -> None:
    started = time.monotonic()
    result = run_cli(
        "run",
        "--records-port",
        "1",
        "--archive-port",
        "2",
        data_dir=services.data_dir,
        timeout=60,
    )

    assert result.returncode == 1
    assert "cannot start on the data dir" in result.stderr
    assert "pupil-records run (pid" in result.stderr
    assert time.monotonic() - started < 30
    health = requests.get(services.records_url + "/healthz", timeout=10)
    assert health.status_code == 200


@pytest.mark.one_backend
def test_busy_port_refused(services: RunningServices, tmp_path: Path) -> None:
    port = services.records_url.rsplit(":", 1)[1]

    result = run_cli(
        "run",
        "--records-port",
        port,
        "--archive-port",
        "1",
        data_dir=tmp_path / "other",
        timeout=60,
    )

    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 is already in use" in result.stderr


def test_dead_worker_restarted(services: RunningServices) -> None:
    def projector_pids() -> list[int]:
        found = []
        for pid in services.children():
            try:
                if psutil.Process(pid).cmdline()[-2:] == ["records", "project"]:
                    found.append(pid)
            except psutil.NoSuchProcess:
                continue
        return found

    [first] = wait_until(projector_pids, 10, "the records projector")
    os.kill(first, signal.SIGKILL)

    def restarted() -> list[int]:
        return [pid for pid in projector_pids() if pid != first]

    [second] = wait_until(restarted, 20, "the projector to be restarted")

    assert second != first
    assert "records-projector was killed by SIGKILL; restarting" in services.output()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["term", "int"])
def test_signal_stops_every_child(
    start_services: Callable[..., RunningServices], signum: int
) -> None:
    running = start_services()
    children = running.children()

    started = time.monotonic()
    running.process.send_signal(signum)
    code = running.process.wait(timeout=30)
    elapsed = time.monotonic() - started
    wait_until(lambda: not alive(children), 2, "every child to end")

    assert len(children) >= 6  # two gunicorn masters with workers, two workers
    assert code == 0
    assert elapsed < 10
    assert "stopped" in running.output()


@pytest.mark.one_backend
def test_restart_reuses_local_tokens(
    start_services: Callable[..., RunningServices], tmp_path: Path
) -> None:
    first = start_services()
    assert first.stop() == 0

    second = start_services(data_dir=first.data_dir)
    response = second.records.get("/api/v1/programmes", role="admin")

    assert second.tokens == first.tokens
    assert len(TokenStore(first.data_dir / "tokens.json").list()) == len(ROLES)
    assert response.status_code == 200, response.text


@pytest.mark.one_backend
def test_data_files_private(services: RunningServices) -> None:
    data_dir = services.data_dir
    folders = [data_dir, data_dir / "logs", data_dir / "metrics"]
    files = [
        *data_dir.glob("*.sqlite*"),
        *data_dir.glob("*.json"),
        *data_dir.glob("*.key"),
        *(data_dir / "logs").glob("*.log"),
    ]

    for folder in folders:
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert data_dir / "tokens.json" in files
    assert data_dir / "master.key" in files
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


@pytest.mark.one_backend
def test_start_up_failure_prints_cause(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    records_port, archive_port = free_ports(2)
    ports = ("--records-port", str(records_port), "--archive-port", str(archive_port))

    # Production mode stops the records processes without a master key.
    finished = run_cli(
        "run", *ports, data_dir=data_dir, env={"PUPIL_RECORDS_ENV": "production"}
    )

    assert finished.returncode == 1
    error = finished.stderr[finished.stderr.index("Error: ") :]
    assert "during start-up:" in error
    assert "no master key in production mode" in error
    assert "PUPIL_RECORDS_MASTER_KEY" in error
