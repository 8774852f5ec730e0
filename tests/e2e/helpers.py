"""Start `pupil-records` processes for end-to-end tests and call them over HTTP."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from datetime import date
from pathlib import Path
from typing import IO, Any, TypeVar

import psutil
import pytest
import requests

from services import runner
from shared.config import Settings

T = TypeVar("T")

READY_TIMEOUT_SECONDS = 120.0
STOP_TIMEOUT_SECONDS = 15.0
HTTP_TIMEOUT_SECONDS = 30.0
BANNER = "pupil-records is running:"
WEB_MODULES = ("services.records.web", "services.archive.web")


def missing_modules(names: tuple[str, ...] = WEB_MODULES) -> list[str]:
    """Return the modules of `names` that do not exist yet.

    A module that exists but fails to import is not missing: its tests run
    and fail, so that a broken import is never hidden by a skip.
    """
    missing = []
    for name in names:
        try:
            spec = importlib.util.find_spec(name)
        except ModuleNotFoundError:
            spec = None
        # A folder without __init__.py is a namespace package: not written yet.
        if spec is None or spec.origin is None:
            missing.append(name)
    return missing


MISSING_MODULES = missing_modules()
requires_services = pytest.mark.skipif(
    bool(MISSING_MODULES), reason=f"not written yet: {', '.join(MISSING_MODULES)}"
)


def free_ports(count: int) -> list[int]:
    """Return `count` distinct TCP ports that are free on 127.0.0.1 now."""
    with ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in sockets:
            probe.bind(("127.0.0.1", 0))
        return [int(probe.getsockname()[1]) for probe in sockets]


def isolated_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """Return this process's environment without any pupil-records setting."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("PUPIL_RECORDS_", "RECORDS_", "ARCHIVE_"))
    }
    env.update(PUPIL_RECORDS_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1", **extra)
    return env


def run_cli(
    *args: str, data_dir: Path, timeout: float = 120.0
) -> subprocess.CompletedProcess[str]:
    """Run `pupil-records ARGS --data-dir DATA_DIR` and return its outcome."""
    return subprocess.run(
        [*runner.cli_command(*args), "--data-dir", str(data_dir)],
        env=isolated_env(data_dir),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def wait_until(
    condition: Callable[[], T], timeout: float, what: str, interval: float = 0.1
) -> T:
    """Return the first truthy value of `condition()`, or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def descendants(pid: int) -> list[int]:
    """Return the pids of every process below `pid`."""
    try:
        return [child.pid for child in psutil.Process(pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        return []


def alive(pids: list[int]) -> list[int]:
    """Return the pids of `pids` that still run (zombies count as ended)."""
    living = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                living.append(pid)
        except psutil.NoSuchProcess:
            pass
    return living


def kill_all(pids: list[int]) -> None:
    """Send SIGKILL to every pid of `pids` that still exists."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def read_tokens(data_dir: Path) -> dict[str, str]:
    """Return the local tokens, one per role, that `run` saved in `data_dir`."""
    path = data_dir / runner.LOCAL_TOKENS_FILE_NAME
    tokens: dict[str, str] = json.loads(path.read_text(encoding="utf-8"))
    return tokens


def cyrillic_word(length: int = 8) -> str:
    """Return a random capitalised Cyrillic word, so that test pupils differ."""
    letters = "абвгдежзиклмнопрстуфхцчшэюя"
    word = "".join(secrets.choice(letters) for _ in range(length))
    return word.capitalize()


# ----------------------------------------------------------------- HTTP clients


class ApiClient:
    """Calls one service over HTTP with the local token of a role."""

    def __init__(self, base_url: str, tokens: Mapping[str, str]) -> None:
        self.base_url = base_url.rstrip("/")
        self.tokens = dict(tokens)
        self.session = requests.Session()

    def request(
        self,
        method: str,
        path: str,
        *,
        role: str | None = None,
        token: str | None = None,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> requests.Response:
        """Send one request as `role` (or with `token`, or with no token)."""
        sent_headers = dict(headers or {})
        bearer = token if token is not None else self.tokens.get(role or "")
        if bearer:
            sent_headers["Authorization"] = f"Bearer {bearer}"
        return self.session.request(
            method,
            self.base_url + path,
            json=json,
            params=params,
            headers=sent_headers,
            timeout=HTTP_TIMEOUT_SECONDS,
        )

    def get(
        self, path: str, *, role: str | None = None, **params: Any
    ) -> requests.Response:
        """Send a GET as `role` with `params` as the query."""
        return self.request("GET", path, role=role, params=params or None)

    def post(self, path: str, json: Any, *, role: str) -> requests.Response:
        """Send a POST of the JSON body `json` as `role`."""
        return self.request("POST", path, role=role, json=json)

    def get_json(
        self, path: str, *, role: str, expected: int = 200, **params: Any
    ) -> dict[str, Any]:
        """GET `path` and return its JSON body, failing on another status."""
        return expect(self.get(path, role=role, **params), expected)

    def post_json(
        self, path: str, json: Any, *, role: str, expected: int = 201
    ) -> dict[str, Any]:
        """POST `json` to `path` and return the JSON body, failing on another status."""
        return expect(self.post(path, json, role=role), expected)

    def close(self) -> None:
        """Close the HTTP session."""
        self.session.close()


def expect(response: requests.Response, status: int) -> dict[str, Any]:
    """Return the JSON body of `response`, failing with the body on another status."""
    assert response.status_code == status, (
        f"{response.request.method} {response.url} returned "
        f"{response.status_code}, expected {status}: {response.text[:2000]}"
    )
    body: dict[str, Any] = response.json()
    return body


def order(number: str, signed_on: date) -> dict[str, str]:
    """Return an order of the centre as the records API takes it."""
    return {"number": number, "date": signed_on.isoformat()}


class RecordsClient(ApiClient):
    """The records service, with the steps that end-to-end scenarios take."""

    def create_programme(self, **overrides: Any) -> dict[str, Any]:
        """Create a programme with two criteria as admin and return it."""
        body = {
            "code": f"E2E-{secrets.token_hex(4)}",
            "title": "Развитие коммуникативных навыков",
            "orientation": "социально-педагогическая",
            "approved_order": order("1-ОД", date(2024, 8, 30)),
            "criteria": [
                {"code": "speech", "title": "Речь", "max_score": 10},
                {"code": "contact", "title": "Контакт", "max_score": 15},
            ],
            "levels": {"high": 0.56, "medium": 0.3},
            **overrides,
        }
        return self.post_json("/api/v1/programmes", body, role="admin")

    def register_pupil(self, **overrides: Any) -> dict[str, Any]:
        """Open the personal file of a new pupil as registrar and return it."""
        body = {
            "surname": cyrillic_word(),
            "name": cyrillic_word(6),
            "patronymic": cyrillic_word(9),
            "birth_date": "2016-03-14",
            **overrides,
        }
        return self.post_json("/api/v1/pupils", body, role="registrar")

    def enrol(
        self, pupil_id: str, programme_id: str, effective_date: date
    ) -> dict[str, Any]:
        """Enrol the pupil from `effective_date` by an order signed that day."""
        body = {
            "programme_id": programme_id,
            "effective_date": effective_date.isoformat(),
            "order": order(f"{secrets.randbelow(900) + 100}-З", effective_date),
        }
        return self.post_json(
            f"/api/v1/pupils/{pupil_id}/enrolments", body, role="registrar"
        )

    def expel(
        self,
        pupil_id: str,
        programme_id: str,
        effective_date: date,
        ground: str = "completed",
    ) -> dict[str, Any]:
        """Expel the pupil by an order signed on `effective_date`, the last day."""
        body = {
            "programme_id": programme_id,
            "effective_date": effective_date.isoformat(),
            "ground": ground,
            "order": order(f"{secrets.randbelow(900) + 100}-О", effective_date),
        }
        return self.post_json(
            f"/api/v1/pupils/{pupil_id}/expulsions", body, role="registrar"
        )

    def personal_file(self, pupil_id: str, min_position: int = 0) -> dict[str, Any]:
        """Return the personal file once the read model has `min_position`."""
        return self.get_json(
            f"/api/v1/pupils/{pupil_id}", role="registrar", min_position=min_position
        )


class ArchiveClient(ApiClient):
    """The archive service."""

    def personal_file_retention(
        self, pupil_id: str, min_position: int, timeout: float = 60.0
    ) -> dict[str, Any]:
        """Return the retention of a personal file at `min_position`.

        Retries while the archive returns 503 or 404, because it is still
        catching up with the records feed.
        """

        def fetch() -> requests.Response | None:
            response = self.get(
                f"/api/v1/retention/personal-files/{pupil_id}",
                role="archivist",
                min_position=min_position,
            )
            return None if response.status_code in (404, 503) else response

        response = wait_until(fetch, timeout, f"the archive to reach {min_position}")
        return expect(response, 200)


# -------------------------------------------------------------- running services


@dataclasses.dataclass
class RunningServices:
    """One `pupil-records run` process started by a test."""

    process: subprocess.Popen[bytes]
    data_dir: Path
    output_path: Path
    records_url: str
    archive_url: str
    tokens: dict[str, str] = dataclasses.field(default_factory=dict)
    known_pids: set[int] = dataclasses.field(default_factory=set)

    @functools.cached_property
    def records(self) -> RecordsClient:
        """The client of the records service, with the local tokens."""
        return RecordsClient(self.records_url, self.tokens)

    @functools.cached_property
    def archive(self) -> ArchiveClient:
        """The client of the archive service, with the local tokens."""
        return ArchiveClient(self.archive_url, self.tokens)

    def output(self) -> str:
        """Return everything the run process has printed so far."""
        return self.output_path.read_text(encoding="utf-8", errors="replace")

    def children(self) -> list[int]:
        """Return the pids below the run process and remember them for clean-up."""
        pids = descendants(self.process.pid)
        self.known_pids.update(pids)
        return pids

    def stop(self, signum: int = signal.SIGTERM) -> int:
        """Send `signum` to the run process and return its exit code."""
        self.children()
        self.process.send_signal(signum)
        try:
            return self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        finally:
            self.kill()

    def kill(self) -> None:
        """Kill the run process and every process it started, whatever state."""
        if self.process.poll() is None:
            self.children()
            self.process.kill()
            self.process.wait()
        kill_all(sorted(self.known_pids))


def start_run(
    data_dir: Path,
    output_path: Path,
    *args: str,
    env: Mapping[str, str] | None = None,
) -> RunningServices:
    """Start `pupil-records run` on free ports and wait until it is ready."""
    records_port, archive_port = free_ports(2)
    argv = runner.cli_command(
        "run",
        "--records-port",
        str(records_port),
        "--archive-port",
        str(archive_port),
        "--data-dir",
        str(data_dir),
        *args,
    )
    with open(output_path, "wb") as output:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else isolated_env(data_dir),
        )
    services = RunningServices(
        process,
        data_dir,
        output_path,
        f"http://127.0.0.1:{records_port}",
        f"http://127.0.0.1:{archive_port}",
    )
    try:
        wait_until(lambda: _started_or_ended(services), READY_TIMEOUT_SECONDS, "run")
        services.children()
        if services.process.poll() is not None:
            raise AssertionError(
                f"pupil-records run exited with {services.process.returncode}:\n"
                + services.output()[-5000:]
            )
        services.tokens = read_tokens(data_dir)
    except BaseException:
        services.kill()
        raise
    return services


def _started_or_ended(services: RunningServices) -> bool:
    services.children()
    return BANNER in services.output() or services.process.poll() is not None


# --------------------------------------------------------- individual processes


class ProcessStack:
    """The four processes of `run`, started one by one so a test can kill one."""

    def __init__(self, data_dir: Path, output: IO[str]) -> None:
        settings = Settings.from_env(environ=isolated_env(data_dir), data_dir=data_dir)
        data_dir.mkdir(parents=True, exist_ok=True)
        self.tokens = runner.ensure_local_tokens(settings)
        records_port, archive_port = free_ports(2)
        self.records_url = f"http://127.0.0.1:{records_port}"
        self.archive_url = f"http://127.0.0.1:{archive_port}"
        settings = dataclasses.replace(
            settings,
            records_url=self.records_url,
            archive_feed_token=self.tokens["subscriber"],
        )
        specs = runner.process_specs(settings, records_port, archive_port)
        self.sink = runner.OutputSink(output, max(len(spec.name) for spec in specs))
        self.supervisor = runner.Supervisor(specs, runner.logs_dir(settings), self.sink)
        self.records = RecordsClient(self.records_url, self.tokens)
        self.archive = ArchiveClient(self.archive_url, self.tokens)

    def child(self, name: str) -> runner.Child:
        """Return the supervised child called `name`, e.g. `records-web`."""
        [found] = [c for c in self.supervisor.children if c.name == name]
        return found

    def start(self) -> None:
        """Start the four processes and wait until both webs are ready."""
        self.supervisor.start_all()
        self.wait_ready()

    def wait_ready(self) -> None:
        """Wait until both webs return 200 from /healthz and /readyz."""
        urls = runner.ServiceUrls(self.records_url, self.archive_url).probes()
        stop = threading.Event()
        runner.wait_until_ready(self.supervisor, urls, stop, READY_TIMEOUT_SECONDS)

    def kill(self, name: str) -> None:
        """Kill the process `name` and its process group at once (SIGKILL)."""
        child = self.child(name)
        child.kill_group()
        child.process = None

    def restart(self, name: str) -> None:
        """Start the process `name` again."""
        child = self.child(name)
        child.start(self.sink)

    def stop(self) -> None:
        """Stop every process; kill what does not stop in time."""
        self.supervisor.stop_all()
        self.records.close()
        self.archive.close()


@contextmanager
def process_stack(data_dir: Path, output_path: Path) -> Iterator[ProcessStack]:
    """Start the four processes individually and stop them all at the end."""
    with open(output_path, "w", encoding="utf-8") as output:
        stack = ProcessStack(data_dir, output)
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()
