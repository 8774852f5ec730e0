"""The data dir locks, the process supervisor and the worker commands, for real."""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

from services import runner
from services.cli import cli
from shared.config import Settings
from shared.locks import ProcessLock


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if key.startswith(("PUPIL_RECORDS_", "RECORDS_", "ARCHIVE_")):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    return Settings.from_env(environ={}, data_dir=data_dir)


def invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def wait_for(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def gunicorn_family(master_pid: int, workers: int) -> list[int]:
    """Return the pids of a gunicorn master and its workers once all have started."""
    master = psutil.Process(master_pid)
    wait_for(lambda: len(master.children()) == workers, 10, "the gunicorn workers")
    return [master_pid, *(child.pid for child in master.children())]


def alive(pids: list[int]) -> list[int]:
    living = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                living.append(pid)
        except psutil.NoSuchProcess:
            pass
    return living


# ---------------------------------------------------------------------- locks

REBUILDS = [["records", "rebuild"], ["archive", "rebuild"]]


def create_event_logs(settings: Settings) -> None:
    """Create the records and archive event logs, empty, as `run` would."""
    from services.archive.application import ArchiveApplication
    from services.records.application import RecordsApplication
    from services.records.keys import load_master_key

    RecordsApplication(
        settings.records_database_url, master_key=load_master_key(settings)
    ).close()
    ArchiveApplication.from_settings(settings).close()


def table_names(url: str) -> list[str]:
    from sqlalchemy import inspect

    from shared.storage import create_sql_engine

    engine = create_sql_engine(url)
    try:
        return sorted(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize("command", REBUILDS, ids=" ".join)
def test_rebuild_refused_while_running(settings: Settings, command: list[str]) -> None:
    create_event_logs(settings)

    with runner.services_running(settings):
        code, out, err = invoke(*command, "--data-dir", str(settings.data_dir))

    assert code == 1
    assert out == ""
    assert "while the services run" in err
    assert "pupil-records run" in err
    assert len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("command", REBUILDS, ids=" ".join)
def test_rebuild_refused_while_lock_shared(
    settings: Settings, command: list[str]
) -> None:
    create_event_logs(settings)
    urls = [settings.records_database_url, settings.archive_database_url]
    tables_before = [table_names(url) for url in urls]
    lock = ProcessLock(
        runner.services_lock_path(settings), owner="records projector", shared=True
    )
    with lock:
        code, _, err = invoke(*command, "--data-dir", str(settings.data_dir))

    assert code == 1
    assert "records projector" in err
    assert [table_names(url) for url in urls] == tables_before


def test_records_rebuild_after_stop(settings: Settings) -> None:
    create_event_logs(settings)

    with runner.services_running(settings):
        pass

    code, _, err = invoke("records", "rebuild", "--data-dir", str(settings.data_dir))

    assert code == 0, err
    assert "rebuilt" in err


def test_run_refused_while_another_runs(settings: Settings) -> None:
    with runner.services_running(settings):
        code, out, err = invoke("run", "--data-dir", str(settings.data_dir))

    assert code == 1
    assert out == ""
    assert "cannot start" in err
    assert str(settings.data_dir) in err
    assert not runner.local_tokens_path(settings).exists()


def test_run_refused_during_rebuild(settings: Settings) -> None:
    with runner.services_stopped(settings, "pupil-records records rebuild"):
        code, _, err = invoke("run", "--data-dir", str(settings.data_dir))

    assert code == 1
    assert "records rebuild" in err
    assert not runner.local_tokens_path(settings).exists()


def test_second_run_lock_refused(settings: Settings) -> None:
    from shared.locks import LockHeldError

    with runner.services_running(settings):
        with pytest.raises(LockHeldError):
            with runner.services_running(settings):
                pass


# ----------------------------------------------------------------- supervisor

WSGI_APP = """
def create_app():
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]
    return app
"""


@pytest.fixture
def sink() -> Iterator[tuple[runner.OutputSink, io.StringIO]]:
    buffer = io.StringIO()
    yield runner.OutputSink(buffer, 12), buffer


@pytest.fixture
def gunicorn_spec(tmp_path: Path) -> tuple[runner.ProcessSpec, str]:
    (tmp_path / "probe_app.py").write_text(WSGI_APP)
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]),
        "PUPIL_RECORDS_BIND": f"127.0.0.1:{port}",
        "PUPIL_RECORDS_GRACEFUL_TIMEOUT": "2",
        "WEB_CONCURRENCY": "2",
    }
    spec = runner.ProcessSpec(
        "probe-web", runner.gunicorn_command("probe_app:create_app()"), env
    )
    return spec, f"http://127.0.0.1:{port}"


def python_spec(name: str, code: str) -> runner.ProcessSpec:
    return runner.ProcessSpec(
        name, (sys.executable, "-c", textwrap.dedent(code)), dict(os.environ)
    )


def test_supervisor_serves_and_stops_gunicorn(
    tmp_path: Path, sink: tuple[runner.OutputSink, io.StringIO], gunicorn_spec
) -> None:
    spec, url = gunicorn_spec
    supervisor = runner.Supervisor([spec], tmp_path / "logs", sink[0])
    supervisor.start_all()
    try:
        ready = runner.wait_until_ready(
            supervisor, [f"{url}/healthz", f"{url}/readyz"], threading.Event(), 30
        )
        family = gunicorn_family(supervisor.children[0].process.pid, workers=2)
    finally:
        started = time.monotonic()
        supervisor.stop_all()
        elapsed = time.monotonic() - started

    assert ready
    assert alive(family) == []
    assert elapsed < runner.STOP_TIMEOUT_SECONDS
    assert "probe-web    | " in sink[1].getvalue()
    assert "Listening at" in (tmp_path / "logs" / "probe-web.log").read_text()


def test_supervisor_restarts_killed_master(
    tmp_path: Path, sink: tuple[runner.OutputSink, io.StringIO], gunicorn_spec
) -> None:
    spec, url = gunicorn_spec
    supervisor = runner.Supervisor([spec], tmp_path / "logs", sink[0])
    child = supervisor.children[0]
    supervisor.start_all()
    try:
        runner.wait_until_ready(supervisor, [f"{url}/healthz"], threading.Event(), 30)
        first_pid, *old_workers = gunicorn_family(child.process.pid, workers=2)
        os.kill(first_pid, signal.SIGKILL)
        wait_for(lambda: child.exit_code() is not None, 5, "the master to die")

        supervisor.tend()
        # The workers outlive a killed master; tend() kills its process group.
        wait_for(lambda: alive(old_workers) == [], 2, "the old workers to die")
        assert child.restart_at is not None
        wait_for(lambda: time.monotonic() >= child.restart_at, 5, "the backoff")
        supervisor.tend()
        ready = runner.wait_until_ready(
            supervisor, [f"{url}/healthz"], threading.Event(), 30
        )
        second_pid = child.process.pid
    finally:
        supervisor.stop_all()

    assert ready
    assert second_pid != first_pid
    assert child.failures == 1


def test_supervisor_restarts_crashed_worker(
    tmp_path: Path, sink: tuple[runner.OutputSink, io.StringIO]
) -> None:
    spec = python_spec("crasher", "print('boom', flush=True); raise SystemExit(3)")
    supervisor = runner.Supervisor([spec], tmp_path / "logs", sink[0])
    child = supervisor.children[0]
    supervisor.start_all()
    first_pid = child.process.pid
    wait_for(lambda: child.exit_code() is not None, 10, "the crash")

    supervisor.tend(now=time.monotonic())
    first_delay = child.restart_at - time.monotonic()
    supervisor.tend(now=child.restart_at)
    second_pid = child.process.pid
    wait_for(lambda: child.exit_code() is not None, 10, "the second crash")
    supervisor.tend(now=time.monotonic())
    second_delay = child.restart_at - time.monotonic()
    supervisor.stop_all()

    assert second_pid != first_pid
    assert 0.5 < first_delay <= 1.0
    assert 1.5 < second_delay <= 2.0
    log_text = (tmp_path / "logs" / "crasher.log").read_text()
    assert log_text.count("boom") == 2


def test_startup_crash_names_child(
    tmp_path: Path, sink: tuple[runner.OutputSink, io.StringIO]
) -> None:
    crasher = python_spec("crasher", "raise SystemExit(3)")
    sleeper = python_spec("sleeper", "import time; time.sleep(60)")
    supervisor = runner.Supervisor([crasher, sleeper], tmp_path / "logs", sink[0])
    supervisor.start_all()
    try:
        with pytest.raises(runner.RunnerError) as caught:
            runner.wait_until_ready(
                supervisor,
                [f"http://127.0.0.1:{free_port()}/healthz"],
                threading.Event(),
            )
    finally:
        supervisor.stop_all()

    message = str(caught.value)
    assert "crasher exited with code 3 during start-up" in message
    assert str(tmp_path / "logs" / "crasher.log") in message
    assert supervisor.children[1].exit_code() is not None


def test_startup_timeout_names_url(
    tmp_path: Path, sink: tuple[runner.OutputSink, io.StringIO]
) -> None:
    sleeper = python_spec("sleeper", "import time; time.sleep(60)")
    supervisor = runner.Supervisor([sleeper], tmp_path / "logs", sink[0])
    url = f"http://127.0.0.1:{free_port()}/readyz"
    supervisor.start_all()
    try:
        with pytest.raises(runner.RunnerError, match="not ready within 1 s") as caught:
            runner.wait_until_ready(supervisor, [url], threading.Event(), timeout=1)
    finally:
        supervisor.stop_all()

    assert url in str(caught.value)


def test_startup_wait_ends_on_stop(
    tmp_path: Path, sink: tuple[runner.OutputSink, io.StringIO]
) -> None:
    sleeper = python_spec("sleeper", "import time; time.sleep(60)")
    supervisor = runner.Supervisor([sleeper], tmp_path / "logs", sink[0])
    stop = threading.Event()
    stop.set()
    supervisor.start_all()
    try:
        ready = runner.wait_until_ready(
            supervisor, [f"http://127.0.0.1:{free_port()}/"], stop
        )
    finally:
        supervisor.stop_all()

    assert ready is False


def test_stop_kills_child_ignoring_sigterm(
    tmp_path: Path,
    sink: tuple[runner.OutputSink, io.StringIO],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(runner, "STOP_TIMEOUT_SECONDS", 1.0)
    stubborn = python_spec(
        "stubborn",
        """
        import signal, subprocess, sys, time
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        print("ready", flush=True)
        time.sleep(60)
        """,
    )
    supervisor = runner.Supervisor([stubborn], tmp_path / "logs", sink[0])
    supervisor.start_all()
    wait_for(lambda: "ready" in sink[1].getvalue(), 10, "the child to start")
    family = [
        supervisor.children[0].process.pid,
        *(p.pid for p in psutil.Process(supervisor.children[0].process.pid).children()),
    ]

    started = time.monotonic()
    supervisor.stop_all()
    elapsed = time.monotonic() - started
    # SIGKILL of the orphaned grandchild takes effect asynchronously.
    wait_for(lambda: alive(family) == [], 2, "the process group to die")

    assert elapsed < 4
    assert len(family) == 2


# -------------------------------------------------------------------- workers


def start_cli(args: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with open(log_path, "wb") as log_file:
        return subprocess.Popen(
            [*runner.cli_command(*args)],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_records_project_stops_on_signal(
    settings: Settings, tmp_path: Path, signum: int
) -> None:
    log_path = tmp_path / "project.log"
    process = start_cli(
        ["records", "project", "--data-dir", str(settings.data_dir)], log_path
    )
    try:
        wait_for(
            lambda: "records projector started" in log_path.read_text(),
            30,
            "the projector to start",
        )
        started = time.monotonic()
        process.send_signal(signum)
        code = process.wait(timeout=10)
        elapsed = time.monotonic() - started
    finally:
        process.kill()
        process.wait()

    assert code == 0, log_path.read_text()
    assert elapsed < 3
    assert "records projector stopped" in log_path.read_text()


STUCK_WORKER = """
import threading, time
from services.cli import run_worker
from shared.config import Settings

def stuck(settings, stop):
    print("stuck worker running", flush=True)
    time.sleep(60)

run_worker("stuck worker", stuck, Settings.from_env())
"""


def test_stuck_worker_exits_after_timeout(tmp_path: Path) -> None:
    log_path = tmp_path / "stuck.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-c", STUCK_WORKER],
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PUPIL_RECORDS_DATA_DIR": str(tmp_path)},
        )
    try:
        wait_for(lambda: "running" in log_path.read_text(), 30, "the worker")
        started = time.monotonic()
        process.terminate()
        code = process.wait(timeout=15)
        elapsed = time.monotonic() - started
    finally:
        process.kill()
        process.wait()

    from services.cli import WORKER_STOP_TIMEOUT_SECONDS

    assert code == 1
    assert WORKER_STOP_TIMEOUT_SECONDS - 0.5 < elapsed < WORKER_STOP_TIMEOUT_SECONDS + 3
    assert "did not stop within" in log_path.read_text()


# ----------------------------------------------------------------------- demo


class RecordsStub:
    """A local HTTP server that answers the two list endpoints of records."""

    def __init__(self, pupils: list[dict[str, str]], status: int = 200) -> None:
        self.pupils = pupils
        self.status = status
        self.requests: list[tuple[str, str]] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                stub.requests.append((self.path, self.headers["Authorization"]))
                items = stub.pupils if self.path.startswith("/api/v1/pupils") else []
                body = json.dumps({"items": items, "next_cursor": None}).encode()
                self.send_response(stub.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> RecordsStub:
        self.thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.shutdown()
        self.server.server_close()


TOKENS = {"registrar": "registrar-token", "admin": "admin-token", "methodist": "m"}


def fake_loader(calls: list[tuple[object, ...]]) -> Callable[[], Callable[..., object]]:
    def load(records_url: str, tokens: dict[str, str], progress: bool = True) -> str:
        calls.append((records_url, tokens, progress))
        return "3 pupils"

    return lambda: load


def test_demo_loaded_into_empty_store(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(runner, "_demo_loader", fake_loader(calls))

    with RecordsStub(pupils=[]) as stub:
        runner._load_demo(stub.url, dict(TOKENS), threading.Event())

    assert calls == [(stub.url, TOKENS, True)]
    assert ("/api/v1/pupils?limit=1", "Bearer registrar-token") in stub.requests
    assert ("/api/v1/programmes", "Bearer admin-token") in stub.requests


def test_demo_skipped_when_store_has_data(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(runner, "_demo_loader", fake_loader(calls))

    with RecordsStub(pupils=[{"id": "p1"}]) as stub:
        runner._load_demo(stub.url, dict(TOKENS), threading.Event())

    assert calls == []


def test_demo_skipped_when_check_fails(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    calls: list[tuple[object, ...]] = []
    monkeypatch.setattr(runner, "_demo_loader", fake_loader(calls))
    caplog.set_level(logging.ERROR, logger="services.runner")

    with RecordsStub(pupils=[], status=503) as stub:
        runner._load_demo(stub.url, dict(TOKENS), threading.Event())

    assert calls == []
    assert "demo data load failed" in caplog.text
    assert "registrar-token" not in caplog.text


def test_demo_loader_missing_logged(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def missing_loader() -> Callable[..., object]:
        raise ImportError("cannot import name 'load' from 'services.demo'")

    monkeypatch.setattr(runner, "_demo_loader", missing_loader)
    caplog.set_level(logging.INFO, logger="services.runner")

    with RecordsStub(pupils=[]) as stub:
        runner._load_demo(stub.url, dict(TOKENS), threading.Event())

    assert "the demo loader is missing" in caplog.text
    assert "demo data loaded" not in caplog.text
