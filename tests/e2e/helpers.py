"""Start `pupil-records` processes for end-to-end tests and call them over HTTP."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import os
import random
import secrets
import signal
import socket
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import IO, Any, TypeVar

import psutil
import pytest
import requests

from services import runner
from shared.config import Settings
from tests.pg_server import PostgresServer

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


def database_env(backend: str, server: PostgresServer | None) -> dict[str, str]:
    """Return the database URLs of a fresh pair of stores on `backend`.

    `sqlite` returns no variable, so the services keep their SQLite files in
    the data dir; `postgres` creates two fresh databases on `server`.
    """
    if backend == "sqlite":
        return {}
    if backend != "postgres" or server is None:
        raise ValueError(f"end-to-end tests cannot run on the {backend!r} backend")
    return {
        "RECORDS_DATABASE_URL": server.create_database(prefix="records"),
        "ARCHIVE_DATABASE_URL": server.create_database(prefix="archive"),
    }


def run_cli(
    *args: str,
    data_dir: Path,
    timeout: float = 120.0,
    env: Mapping[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run `pupil-records ARGS --data-dir DATA_DIR` and return its outcome.

    `env` adds variables, e.g. the database URLs, to the isolated environment.
    """
    return subprocess.run(
        [*runner.cli_command(*args), "--data-dir", str(data_dir)],
        env=isolated_env(data_dir, **(env or {})),
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
    # The database URLs the run was given; empty for the data dir's SQLite files.
    database_env: dict[str, str] = dataclasses.field(default_factory=dict)

    @functools.cached_property
    def records(self) -> RecordsClient:
        """The client of the records service, with the local tokens."""
        return RecordsClient(self.records_url, self.tokens)

    @functools.cached_property
    def archive(self) -> ArchiveClient:
        """The client of the archive service, with the local tokens."""
        return ArchiveClient(self.archive_url, self.tokens)

    def cli(
        self, *args: str, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run `pupil-records ARGS` on this run's data dir and databases."""
        return run_cli(
            *args, data_dir=self.data_dir, timeout=timeout, env=self.database_env
        )

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
    database_env: Mapping[str, str] | None = None,
) -> RunningServices:
    """Start `pupil-records run` on free ports and wait until it is ready.

    `env` replaces the whole environment of the run; `database_env` adds the
    database URLs to the default isolated one.
    """
    databases = dict(database_env or {})
    if env is None:
        env = isolated_env(data_dir, **databases)
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
            env=dict(env),
        )
    services = RunningServices(
        process,
        data_dir,
        output_path,
        f"http://127.0.0.1:{records_port}",
        f"http://127.0.0.1:{archive_port}",
        database_env=databases,
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

    def __init__(
        self,
        data_dir: Path,
        output: IO[str],
        database_env: Mapping[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.database_env = dict(database_env or {})
        environ = isolated_env(data_dir, **self.database_env)
        settings = Settings.from_env(environ=environ, data_dir=data_dir)
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

    def stop_processes(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL); `start()` starts them again."""
        self.supervisor.stop_all()

    def cli(
        self, *args: str, timeout: float = 120.0
    ) -> subprocess.CompletedProcess[str]:
        """Run `pupil-records ARGS` on this stack's data dir and databases."""
        return run_cli(
            *args, data_dir=self.data_dir, timeout=timeout, env=self.database_env
        )

    def stop(self) -> None:
        """Stop every process; kill what does not stop in time."""
        self.supervisor.stop_all()
        self.records.close()
        self.archive.close()


@contextmanager
def process_stack(
    data_dir: Path,
    output_path: Path,
    database_env: Mapping[str, str] | None = None,
) -> Iterator[ProcessStack]:
    """Start the four processes individually and stop them all at the end."""
    with open(output_path, "w", encoding="utf-8") as output:
        stack = ProcessStack(data_dir, output, database_env)
        try:
            stack.start()
            yield stack
        finally:
            stack.stop()


# ------------------------------------------------------------ read-model dumps

YEAR_START = date(2024, 9, 2)
YEAR_END = date(2025, 5, 31)
# Personal files opened before the academic year, so that every order fits.
FILE_OPENED_ON = date(2024, 8, 26)
ReadModelDump = dict[str, Any]


def all_items(
    client: ApiClient, path: str, *, role: str, **params: Any
) -> list[dict[str, Any]]:
    """Return the items of every page of the list at `path`, in list order."""
    items: list[dict[str, Any]] = []
    cursor: str | None = None
    while True:
        query = {**params, "limit": 1000}
        if cursor is not None:
            query["cursor"] = cursor
        body = client.get_json(path, role=role, **query)
        items.extend(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return items


def wait_for_records(records: RecordsClient, position: int, timeout: float) -> None:
    """Wait until the records read models have processed `position`."""

    def reached() -> bool:
        response = records.get(
            "/api/v1/programmes", role="admin", min_position=position
        )
        return response.status_code == 200

    wait_until(reached, timeout, f"the records read models to reach {position}", 0.5)


def wait_for_archive(archive: ArchiveClient, position: int, timeout: float) -> None:
    """Wait until the archive has processed records position `position`."""

    def reached() -> bool:
        response = archive.get("/api/v1/status", role="archivist")
        if response.status_code != 200:
            return False
        return int(response.json()["processed_position"]) >= position

    wait_until(reached, timeout, f"the archive to process position {position}", 0.5)


def dump_records(
    records: RecordsClient, pupil_ids: list[str], journal_ids: list[str]
) -> ReadModelDump:
    """Read every list, personal file, history and journal through the API."""
    dump: ReadModelDump = {
        "programmes": all_items(records, "/api/v1/programmes", role="admin"),
        "pupils": all_items(records, "/api/v1/pupils", role="registrar"),
    }
    for status in ("registered", "enrolled", "left"):
        dump[f"pupils?status={status}"] = all_items(
            records, "/api/v1/pupils", role="registrar", status=status
        )
    for programme in dump["programmes"]:
        key = f"pupils?programme_id={programme['id']}"
        dump[key] = all_items(
            records, "/api/v1/pupils", role="registrar", programme_id=programme["id"]
        )
    for pupil_id in sorted(pupil_ids):
        path = f"/api/v1/pupils/{pupil_id}"
        dump[f"pupil {pupil_id}"] = records.get_json(path, role="registrar")
        dump[f"history {pupil_id}"] = all_items(
            records, f"{path}/history", role="methodist"
        )
    for journal_id in sorted(journal_ids):
        path = f"/api/v1/journals/{journal_id}"
        dump[f"journal {journal_id}"] = records.get_json(path, role="specialist")
    return dump


def dump_archive(
    archive: ArchiveClient, pupil_ids: list[str], journal_ids: list[str], on: date
) -> ReadModelDump:
    """Read the retention list and every retention entry on the date `on`."""
    day = on.isoformat()
    dump: ReadModelDump = {
        "retention": all_items(archive, "/api/v1/retention", role="archivist", on=day)
    }
    for pupil_id in sorted(pupil_ids):
        path = f"/api/v1/retention/personal-files/{pupil_id}"
        dump[f"retention {pupil_id}"] = archive.get_json(path, role="archivist", on=day)
    for journal_id in sorted(journal_ids):
        path = f"/api/v1/retention/journals/{journal_id}"
        dump[f"retention {journal_id}"] = archive.get_json(
            path, role="archivist", on=day
        )
    return dump


def assert_same_dumps(actual: ReadModelDump, expected: ReadModelDump) -> None:
    """Compare two dumps part by part, so that a failure names the part."""
    assert sorted(actual) == sorted(expected)
    for key, value in expected.items():
        assert actual[key] == value, f"{key} differs from the rebuilt read model"


# -------------------------------------------------------------- command stream


@dataclasses.dataclass
class Outcome:
    """One command sent over HTTP: its status and body, or why none came."""

    step: str
    status: int | None
    body: Any = None
    error: str | None = None

    @property
    def succeeded(self) -> bool:
        """Whether the service returned 2xx, so the command is in the log."""
        return self.status is not None and 200 <= self.status < 300


@dataclasses.dataclass
class PupilState:
    """One pupil's programmes, as the workload's 2xx responses imply them."""

    active: dict[str, str] = dataclasses.field(default_factory=dict)
    expelled: dict[str, str] = dataclasses.field(default_factory=dict)
    programmes_ever: set[str] = dataclasses.field(default_factory=set)
    with_records: set[str] = dataclasses.field(default_factory=set)


@dataclasses.dataclass
class JournalState:
    """A journal of the workload, its programme and its next free session slot."""

    id: str
    programme_id: str
    slots_used: int = 0
    closed: bool = False


SESSION_TIMES = ("09:00", "10:00", "11:00", "12:00", "15:00")
ATTENDANCE_STATUSES = ("present", "present", "present", "absent", "ill", "excused")


class Workload:
    """Sends a seeded random stream of valid records commands over HTTP.

    The stream registers, enrols and expels pupils, cancels orders, records
    attestations and sessions with attendance, and closes journals. It keeps
    the state that the 2xx responses imply, so each next command is valid,
    and counts the attendance that the personal files must show.
    """

    def __init__(self, records: RecordsClient, rng: random.Random) -> None:
        self.records = records
        self.rng = rng
        self.pupils: dict[str, PupilState] = {}
        self.journals: list[JournalState] = []
        self.programme_ids: list[str] = []
        self.outcomes: list[Outcome] = []
        self.attendance: dict[tuple[str, str], Counter[str]] = {}
        self.last_position = 0
        self._lock = threading.Lock()

    # Set-up and the stream

    def prepare(self, programmes: int = 2) -> None:
        """Create the programmes and one journal for each."""
        for _ in range(programmes):
            programme = self.records.create_programme()
            self.programme_ids.append(programme["id"])
            journal = self.records.post_json(
                "/api/v1/journals", journal_body(programme["id"]), role="specialist"
            )
            self.journals.append(JournalState(journal["id"], programme["id"]))
            self.last_position = max(self.last_position, int(journal["position"]))

    def run(self, count: int, stop: threading.Event | None = None) -> None:
        """Send up to `count` commands, fewer if `stop` is set."""
        for _ in range(count):
            if stop is not None and stop.is_set():
                return
            self.step()

    def step(self) -> Outcome:
        """Send one command chosen at random among those valid now."""
        choices = self._choices()
        steps, weights = zip(*choices, strict=True)
        chosen = self.rng.choices(steps, weights=weights)[0]
        return chosen()

    def _choices(self) -> list[tuple[Callable[[], Outcome], int]]:
        choices: list[tuple[Callable[[], Outcome], int]] = [(self.register, 2)]
        if self._pupils_to_enrol():
            choices.append((self.enrol, 4))
        if self._open_journals_with_pupils():
            choices.append((self.record_session, 6))
        if self._active_pairs():
            choices += [(self.attest, 2), (self.expel, 2)]
        if self._expelled_pairs():
            choices.append((self.cancel_expulsion, 1))
        if self._cancellable_enrolments():
            choices.append((self.cancel_enrolment, 1))
        return choices

    # Commands

    def register(self) -> Outcome:
        """Register a pupil with a random Cyrillic name."""
        body = {
            "surname": cyrillic_word(),
            "name": cyrillic_word(6),
            "patronymic": cyrillic_word(9),
            "birth_date": "2016-03-14",
            "opened_on": FILE_OPENED_ON.isoformat(),
        }
        outcome = self.send("register", "/api/v1/pupils", body, "registrar")
        if outcome.succeeded:
            self.pupils[outcome.body["id"]] = PupilState()
        return outcome

    def enrol(self) -> Outcome:
        """Enrol a pupil in a programme they have never attended."""
        pupil_id, programme_id = self.rng.choice(self._pupils_to_enrol())
        body = {
            "programme_id": programme_id,
            "effective_date": YEAR_START.isoformat(),
            "order": order(f"{self.rng.randrange(1, 999)}-З", YEAR_START),
        }
        path = f"/api/v1/pupils/{pupil_id}/enrolments"
        outcome = self.send("enrol", path, body, "registrar")
        if outcome.succeeded:
            state = self.pupils[pupil_id]
            state.active[programme_id] = outcome.body["id"]
            state.programmes_ever.add(programme_id)
        return outcome

    def record_session(self) -> Outcome:
        """Record a session with attendance of pupils active in its programme."""
        journal, candidates = self.rng.choice(self._open_journals_with_pupils())
        chosen = self.rng.sample(candidates, min(len(candidates), 4))
        lines = [
            {"pupil_id": pupil_id, "status": self.rng.choice(ATTENDANCE_STATUSES)}
            for pupil_id in chosen
        ]
        day = YEAR_START + timedelta(days=journal.slots_used // len(SESSION_TIMES))
        body = {
            "date": day.isoformat(),
            "start_time": SESSION_TIMES[journal.slots_used % len(SESSION_TIMES)],
            "duration_minutes": 40,
            "topic": "Развитие внимания",
            "attendance": lines,
        }
        journal.slots_used += 1
        path = f"/api/v1/journals/{journal.id}/sessions"
        outcome = self.send("session", path, body, "specialist")
        if outcome.succeeded:
            for line in lines:
                self._count_attendance(line["pupil_id"], journal, line["status"])
        return outcome

    def attest(self) -> Outcome:
        """Record an intermediate attestation of an active pupil."""
        pupil_id, programme_id = self.rng.choice(self._active_pairs())
        day = date(2025, 5, 20)
        body = {
            "programme_id": programme_id,
            "kind": "intermediate",
            "date": day.isoformat(),
            "scores": {
                "speech": self.rng.randint(0, 10),
                "contact": self.rng.randint(0, 15),
            },
            "protocol": order(f"П-{secrets.token_hex(4)}", day),
        }
        path = f"/api/v1/pupils/{pupil_id}/attestations"
        outcome = self.send("attest", path, body, "methodist")
        if outcome.succeeded:
            self.pupils[pupil_id].with_records.add(programme_id)
        return outcome

    def expel(self) -> Outcome:
        """Expel an active pupil from one programme on the last day of the year."""
        pupil_id, programme_id = self.rng.choice(self._active_pairs())
        body = {
            "programme_id": programme_id,
            "effective_date": YEAR_END.isoformat(),
            "ground": self.rng.choice(["completed", "parents_request"]),
            "order": order(f"{self.rng.randrange(1, 999)}-О", YEAR_END),
        }
        path = f"/api/v1/pupils/{pupil_id}/expulsions"
        outcome = self.send("expel", path, body, "registrar")
        if outcome.succeeded:
            state = self.pupils[pupil_id]
            del state.active[programme_id]
            state.expelled[programme_id] = outcome.body["id"]
        return outcome

    def cancel_expulsion(self) -> Outcome:
        """Cancel the expulsion of a pupil from one programme."""
        pupil_id, programme_id = self.rng.choice(self._expelled_pairs())
        state = self.pupils[pupil_id]
        expulsion_id = state.expelled[programme_id]
        body = {
            "reason": "Приказ издан ошибочно",
            "order": order(f"{self.rng.randrange(1, 999)}-О", date(2025, 6, 2)),
        }
        path = f"/api/v1/pupils/{pupil_id}/expulsions/{expulsion_id}/cancellation"
        outcome = self.send("cancel expulsion", path, body, "registrar")
        if outcome.succeeded:
            del state.expelled[programme_id]
            state.active[programme_id] = outcome.body["enrolment_id"]
        return outcome

    def cancel_enrolment(self) -> Outcome:
        """Cancel an enrolment that has nothing recorded under it."""
        pupil_id, programme_id = self.rng.choice(self._cancellable_enrolments())
        state = self.pupils[pupil_id]
        enrolment_id = state.active[programme_id]
        body = {
            "reason": "Зачислен ошибочно",
            "order": order(f"{self.rng.randrange(1, 999)}-З", date(2024, 9, 3)),
        }
        path = f"/api/v1/pupils/{pupil_id}/enrolments/{enrolment_id}/cancellation"
        outcome = self.send("cancel enrolment", path, body, "registrar")
        if outcome.succeeded:
            del state.active[programme_id]
        return outcome

    def close_journals(self) -> list[Outcome]:
        """Close every open journal on the last day of the academic year."""
        outcomes = []
        for journal in self.journals:
            if journal.closed:
                continue
            body = {"closed_on": YEAR_END.isoformat()}
            path = f"/api/v1/journals/{journal.id}/closure"
            outcome = self.send("close journal", path, body, "specialist")
            journal.closed = journal.closed or outcome.succeeded
            outcomes.append(outcome)
        return outcomes

    def send(self, step: str, path: str, body: Any, role: str) -> Outcome:
        """POST `body` and record the outcome; a lost connection is an outcome too."""
        try:
            response = self.records.post(path, body, role=role)
        except requests.RequestException as error:
            outcome = Outcome(step, None, error=type(error).__name__)
        else:
            outcome = Outcome(step, response.status_code, _json_or_text(response))
        if outcome.succeeded:
            self.last_position = max(self.last_position, int(outcome.body["position"]))
        with self._lock:
            self.outcomes.append(outcome)
        return outcome

    # Commands that the state implied by the responses so far allows

    def _pupils_to_enrol(self) -> list[tuple[str, str]]:
        # A pupil who left may come back only after the last day of the year,
        # so the workload leaves them out and keeps every date in that year.
        return [
            (pupil_id, programme_id)
            for pupil_id, state in self.pupils.items()
            for programme_id in self.programme_ids
            if programme_id not in state.programmes_ever
            and (state.active or not state.expelled)
        ]

    def _active_pairs(self) -> list[tuple[str, str]]:
        return [
            (pupil_id, programme_id)
            for pupil_id, state in self.pupils.items()
            for programme_id in state.active
        ]

    def _expelled_pairs(self) -> list[tuple[str, str]]:
        return [
            (pupil_id, programme_id)
            for pupil_id, state in self.pupils.items()
            for programme_id in state.expelled
        ]

    def _cancellable_enrolments(self) -> list[tuple[str, str]]:
        return [
            (pupil_id, programme_id)
            for pupil_id, programme_id in self._active_pairs()
            if programme_id not in self.pupils[pupil_id].with_records
        ]

    def _open_journals_with_pupils(self) -> list[tuple[JournalState, list[str]]]:
        found = []
        for journal in self.journals:
            pupils = [
                pupil_id
                for pupil_id, state in self.pupils.items()
                if journal.programme_id in state.active
            ]
            if pupils and not journal.closed:
                found.append((journal, pupils))
        return found

    def _count_attendance(
        self, pupil_id: str, journal: JournalState, status: str
    ) -> None:
        self.pupils[pupil_id].with_records.add(journal.programme_id)
        counts = self.attendance.setdefault((pupil_id, journal.id), Counter())
        counts["sessions"] += 1
        counts[status] += 1

    def expected_attendance(self, pupil_id: str) -> list[dict[str, Any]]:
        """Return the attendance lines the personal file of `pupil_id` must show."""
        lines = []
        for (counted_pupil, journal_id), counts in sorted(self.attendance.items()):
            if counted_pupil != pupil_id:
                continue
            programme_id = next(
                j.programme_id for j in self.journals if j.id == journal_id
            )
            lines.append(
                {
                    "journal_id": journal_id,
                    "programme_id": programme_id,
                    "sessions": counts["sessions"],
                    "present": counts["present"],
                    "absent": counts["absent"] + counts["ill"] + counts["excused"],
                    "ill": counts["ill"],
                    "excused": counts["excused"],
                }
            )
        return lines


def journal_body(programme_id: str) -> dict[str, Any]:
    """Return a group journal of the 2024/2025 academic year."""
    return {
        "programme_id": programme_id,
        "specialist": {
            "name": "Смирнова Ольга Петровна",
            "position": "педагог-психолог",
        },
        "academic_year": {"start": YEAR_START.isoformat(), "end": YEAR_END.isoformat()},
        "kind": "group",
        "group": f"Группа {secrets.randbelow(90) + 10}",
    }


def _json_or_text(response: requests.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text
