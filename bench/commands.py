"""Benchmark 1: commands per second over HTTP against raw single-event saves.

Client threads drive the real records web service (gunicorn with the
deployment's workers and threads, `services.records.web:create_app()`) with
the commands of a pupil's year: registration, enrolment, intermediate and
final attestation, expulsion, then the next pupil. The baseline saves one
minimal aggregate per transaction with the bare library, on the same
database, with one thread and with as many threads as the clients.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import IO, Any

from bench.client import JsonClient
from bench.generate import first_working_day
from bench.load import Outcome, Throughput, Worker, run_threads
from bench.people import (
    ORIENTATION,
    PROGRAMME_TITLES,
    PupilNames,
    last_finished_year_start,
    programme_criteria,
)
from bench.processes import MemoryWatch, ServiceProcesses, cpu_seconds
from bench.raw import raw_application, raw_url, save_note
from shared.config import Settings

PROGRAMMES = 4
# Events each command of the cycle writes: a registration also claims the
# pupil's identity.
CYCLE = (
    ("register", 2),
    ("enrol", 1),
    ("intermediate", 1),
    ("final", 1),
    ("expel", 1),
)


@dataclass(frozen=True)
class CommandsResult:
    """Commands per second over HTTP, the raw saves per second, and their ratio."""

    clients: int
    duration_s: float
    http: Throughput
    events_per_second: float
    raw_one_thread: Throughput
    raw_many_threads: Throughput
    raw_best_per_second: float
    ratio: float | None
    # CPU milliseconds per HTTP command of the web workers, the client threads
    # and a throwaway PostgreSQL server. The raw entry is per save instead.
    cpu_ms_per_command: dict[str, float] = field(default_factory=dict)
    memory_mib: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class SchoolYear:
    """The dates of one academic year's commands, all in the past."""

    start: date
    opened_on: date
    intermediate_on: date
    final_on: date
    expelled_on: date
    born_between: tuple[date, date]

    @classmethod
    def last_finished(cls, today: date) -> SchoolYear:
        """Return the last academic year that ended before `today`."""
        year = last_finished_year_start(today)
        start = first_working_day(date(year, 9, 1))
        return cls(
            start=start,
            opened_on=start - timedelta(days=7),
            intermediate_on=date(year, 12, 20),
            final_on=date(year + 1, 5, 20),
            expelled_on=date(year + 1, 5, 29),
            born_between=(date(year - 15, 1, 1), date(year - 5, 12, 31)),
        )


def run_commands(
    settings: Settings,
    *,
    clients: int,
    warmup: float,
    duration: float,
    seed: int,
    log: IO[str],
    database_pid: int | None = None,
) -> CommandsResult:
    """Measure the HTTP command rate and the raw save rate on the same database.

    `database_pid`, the main process of a local database server, adds the
    server's CPU time per command to the result.
    """
    http, cpu, memory = _measure_http(
        settings, clients, warmup, duration, seed, log, database_pid
    )
    with raw_application(raw_url(settings)) as app:
        raw_cpu = time.process_time()
        one = run_threads(1, warmup, duration, lambda _: _raw_worker(app))
        raw_cpu = time.process_time() - raw_cpu
        many = run_threads(clients, warmup, duration, lambda _: _raw_worker(app))
    if one.completed:
        cpu["raw save, 1 thread"] = 1000 * raw_cpu / one.completed

    best = max(one.per_second, many.per_second)
    return CommandsResult(
        clients=clients,
        duration_s=duration,
        http=http,
        events_per_second=http.per_second * sum(n for _, n in CYCLE) / len(CYCLE),
        raw_one_thread=one,
        raw_many_threads=many,
        raw_best_per_second=best,
        ratio=http.per_second / best if best else None,
        cpu_ms_per_command=cpu,
        memory_mib=memory,
    )


def _measure_http(
    settings: Settings,
    clients: int,
    warmup: float,
    duration: float,
    seed: int,
    log: IO[str],
    database_pid: int | None,
) -> tuple[Throughput, dict[str, float], dict[str, float]]:
    """Drive the records web service; return its throughput, CPU and memory."""
    processes = ServiceProcesses(settings, ["records-web"], log)
    processes.start()
    watch = MemoryWatch().watch(processes.pids())
    meters = {"records web": list(processes.pids().values())}
    if database_pid is not None:
        meters["database server"] = [database_pid]
    try:
        before = {name: cpu_seconds(pids) for name, pids in meters.items()}
        client_before = time.process_time()
        http = _drive(processes, clients, warmup, duration, seed)
        used = {name: cpu_seconds(pids) - before[name] for name, pids in meters.items()}
        used["client"] = time.process_time() - client_before
        processes.check_running()
    finally:
        memory = watch.stop()
        processes.stop()
    cpu = {
        name: 1000 * seconds / http.completed
        for name, seconds in used.items()
        if http.completed
    }
    return http, cpu, memory


def _drive(
    processes: ServiceProcesses, clients: int, warmup: float, duration: float, seed: int
) -> Throughput:
    admin = JsonClient(processes.records_url, processes.tokens)
    programmes = [create_programme(admin, index) for index in range(PROGRAMMES)]
    admin.close()
    year = SchoolYear.last_finished(date.today())
    names = PupilNames(random.Random(seed))

    def make_worker(index: int) -> Worker:
        client = JsonClient(processes.records_url, processes.tokens)
        cycle = PupilCycle(client, programmes[index % len(programmes)], year, names)
        return cycle.next_command

    return run_threads(clients, warmup, duration, make_worker)


def create_programme(client: JsonClient, index: int) -> dict[str, Any]:
    """Create a programme with three criteria as admin and return it."""
    body = {
        "code": f"БЕНЧ-{random.randrange(10**8):08d}-{index}",
        "title": PROGRAMME_TITLES[index % len(PROGRAMME_TITLES)],
        "orientation": ORIENTATION,
        "approved_order": {"number": f"{index + 1}-од", "date": "2019-08-28"},
        "criteria": programme_criteria(index),
        "levels": {"high": 0.8, "medium": 0.5},
    }
    created: dict[str, Any] = client.expect(
        client.post("/api/v1/programmes", "admin", body), 201
    )
    return created


class PupilCycle:
    """Takes one pupil after another through a year, one command per call."""

    def __init__(
        self,
        client: JsonClient,
        programme: dict[str, Any],
        year: SchoolYear,
        names: PupilNames,
    ) -> None:
        self.client = client
        self.programme = programme
        self.year = year
        self.names = names
        self.step = 0
        self.pupil_id: str | None = None
        self.last_position = 0
        self.orders = 0

    def next_command(self) -> list[Outcome]:
        """Send the pupil's next command; a failed one starts a new pupil."""
        kind, _events = CYCLE[self.step]
        outcome = self.send(kind)
        self.step = (self.step + 1) % len(CYCLE) if outcome.ok else 0
        return [outcome]

    def send(self, kind: str) -> Outcome:
        """Send one command of the cycle (`register`, `enrol`, ...) for the pupil."""
        reply = getattr(self, f"_{kind}")()
        ok = reply.status in (200, 201)
        if ok and kind == "register":
            self.pupil_id = reply.body["id"]
        if ok:
            self.last_position = int(reply.body["position"])
        return Outcome(_now(), reply.seconds, ok)

    def _register(self) -> Any:
        person = self.names.draw(self.year.born_between)
        body = {
            "surname": person.surname,
            "name": person.name,
            "patronymic": person.patronymic,
            "birth_date": person.birth_date.isoformat(),
            "opened_on": self.year.opened_on.isoformat(),
        }
        return self.client.post("/api/v1/pupils", "registrar", body)

    def _enrol(self) -> Any:
        body = {
            "programme_id": self.programme["id"],
            "effective_date": self.year.start.isoformat(),
            "order": self._order(self.year.start),
        }
        return self.client.post(self._pupil_path("enrolments"), "registrar", body)

    def _intermediate(self) -> Any:
        return self._attest("intermediate", self.year.intermediate_on)

    def _final(self) -> Any:
        return self._attest("final", self.year.final_on)

    def _attest(self, kind: str, on: date) -> Any:
        scores = {
            c["code"]: 3 + (self.orders + i) % 8
            for i, c in enumerate(self.programme["criteria"])
        }
        body = {
            "programme_id": self.programme["id"],
            "kind": kind,
            "date": on.isoformat(),
            "scores": scores,
            "protocol": {"number": f"{on.month}-п", "date": on.isoformat()},
        }
        return self.client.post(self._pupil_path("attestations"), "methodist", body)

    def _expel(self) -> Any:
        body = {
            "programme_id": self.programme["id"],
            "effective_date": self.year.expelled_on.isoformat(),
            "ground": "completed",
            "order": self._order(self.year.expelled_on),
        }
        return self.client.post(self._pupil_path("expulsions"), "registrar", body)

    def _pupil_path(self, tail: str) -> str:
        return f"/api/v1/pupils/{self.pupil_id}/{tail}"

    def _order(self, signed_on: date) -> dict[str, str]:
        self.orders += 1
        return {"number": f"{self.orders}-у", "date": signed_on.isoformat()}


def _raw_worker(app: Any) -> Worker:
    def save() -> list[Outcome]:
        started = _now()
        save_note(app)
        finished = _now()
        return [Outcome(finished, finished - started, True)]

    return save


def _now() -> float:
    return time.perf_counter()
