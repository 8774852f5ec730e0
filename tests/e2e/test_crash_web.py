"""The records web under concurrent writes: killed workers and conflicts.

A command that got a 2xx response is in the log, whatever happens to the
gunicorn worker that served it afterwards, and a command is written at most
once. Conflicting commands on one pupil each get a 2xx or a 409, and the
personal file equals the one `records rebuild` replays from the log.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import date
from typing import Any

import psutil
import pytest
import requests

from tests.e2e.helpers import (
    FILE_OPENED_ON,
    Outcome,
    ProcessStack,
    RecordsClient,
    all_items,
    cyrillic_word,
    order,
    requires_services,
    wait_for_records,
    wait_until,
)

pytestmark = [pytest.mark.e2e, requires_services]

SEED = int(os.environ.get("PUPIL_RECORDS_CRASH_SEED", "20250531"))
WRITERS = 4
# Each writer stops once every kill is done, or after MAX_PUPILS_PER_WRITER.
MAX_PUPILS_PER_WRITER = 200
WORKER_KILLS = 4
CONFLICT_THREADS = 20
CONFLICT_ROUNDS = 4
ENROLMENT_DATES = [date(2024, 9, 2), date(2024, 11, 1), date(2025, 1, 15)]
EXPULSION_DATES = [date(2024, 10, 31), date(2024, 12, 27), date(2025, 5, 30)]
CATCH_UP_TIMEOUT_SECONDS = 60.0


def send(records: RecordsClient, step: str, path: str, body: Any, role: str) -> Outcome:
    """POST `body` and return its outcome; a lost connection is an outcome too."""
    try:
        response = records.post(path, body, role=role)
    except requests.RequestException as error:
        return Outcome(step, None, error=type(error).__name__)
    try:
        answer = response.json()
    except ValueError:
        answer = response.text
    return Outcome(step, response.status_code, answer)


# ---------------------------------------------------------- killed web workers


class PupilWriter:
    """Registers, enrols and attests pupils with names of its own."""

    def __init__(
        self, records: RecordsClient, programme_id: str, stop: threading.Event
    ) -> None:
        # Each thread has its own HTTP session: sessions are not thread-safe.
        self.records = RecordsClient(records.base_url, records.tokens)
        self.programme_id = programme_id
        self.stop = stop
        self.surnames: list[str] = []
        self.outcomes: list[tuple[Outcome, str]] = []

    def run(self) -> None:
        """Write pupils until `stop` is set, going on after lost connections."""
        for _ in range(MAX_PUPILS_PER_WRITER):
            if self.stop.is_set():
                break
            self.write_pupil()
        self.records.close()

    def write_pupil(self) -> None:
        surname = cyrillic_word(12)
        self.surnames.append(surname)
        body = {
            "surname": surname,
            "name": cyrillic_word(6),
            "birth_date": "2016-03-14",
            "opened_on": FILE_OPENED_ON.isoformat(),
        }
        registered = self.record(surname, "register", "/api/v1/pupils", body)
        if not registered.succeeded:
            return
        pupil_path = f"/api/v1/pupils/{registered.body['id']}"
        enrolment = {
            "programme_id": self.programme_id,
            "effective_date": "2024-09-02",
            "order": order("1-З", date(2024, 9, 2)),
        }
        enrolled = self.record(surname, "enrol", f"{pupil_path}/enrolments", enrolment)
        if not enrolled.succeeded:
            return
        attestation = {
            "programme_id": self.programme_id,
            "kind": "intermediate",
            "date": "2024-12-20",
            "scores": {"speech": 7, "contact": 9},
            "protocol": order(f"П-{surname}", date(2024, 12, 20)),
        }
        self.record(surname, "attest", f"{pupil_path}/attestations", attestation)

    def record(self, surname: str, step: str, path: str, body: Any) -> Outcome:
        role = "methodist" if step == "attest" else "registrar"
        outcome = send(self.records, step, path, body, role)
        self.outcomes.append((outcome, surname))
        return outcome


def gunicorn_workers(stack: ProcessStack) -> list[int]:
    """Return the pids of the records web's gunicorn workers."""
    master = stack.child("records-web").process
    assert master is not None
    try:
        return [child.pid for child in psutil.Process(master.pid).children()]
    except psutil.NoSuchProcess:
        return []


def kill_web_workers(stack: ProcessStack, rng: random.Random) -> list[int]:
    """SIGKILL a random records web worker WORKER_KILLS times, now and then."""
    killed: list[int] = []
    for _ in range(WORKER_KILLS):
        time.sleep(rng.uniform(0.3, 1.2))
        # gunicorn starts a new worker for each one killed, with a new pid.
        workers = wait_until(
            lambda: [pid for pid in gunicorn_workers(stack) if pid not in killed],
            30,
            "a records web worker",
        )
        victim = rng.choice(sorted(workers))
        os.kill(victim, signal.SIGKILL)
        killed.append(victim)
    return killed


def history_positions(records: RecordsClient, pupil_id: str) -> list[int]:
    """Return the positions of the events of the pupil's stream."""
    path = f"/api/v1/pupils/{pupil_id}/history"
    return [entry["position"] for entry in all_items(records, path, role="methodist")]


def test_killed_worker_loses_no_answered_command(stack: ProcessStack) -> None:
    rng = random.Random(SEED)
    programme = stack.records.create_programme()
    stop = threading.Event()
    writers = [
        PupilWriter(stack.records, programme["id"], stop) for _ in range(WRITERS)
    ]
    threads = [threading.Thread(target=w.run, daemon=True) for w in writers]

    for thread in threads:
        thread.start()
    killed = kill_web_workers(stack, rng)
    stop.set()
    for thread in threads:
        thread.join(timeout=120)
    stack.wait_ready()
    outcomes = [pair for writer in writers for pair in writer.outcomes]
    answered = [(o, surname) for o, surname in outcomes if o.succeeded]
    head = max(o.body["position"] for o, _ in answered)
    wait_for_records(stack.records, head, CATCH_UP_TIMEOUT_SECONDS)
    listed = all_items(stack.records, "/api/v1/pupils", role="registrar")
    surnames = [w for writer in writers for w in writer.surnames]
    by_surname = Counter(item["surname"] for item in listed)
    pupil_of = {item["surname"]: item["id"] for item in listed}

    assert not any(thread.is_alive() for thread in threads)
    assert len(killed) == WORKER_KILLS
    assert {o.status for o, _ in outcomes} <= {200, 201, None}, outcomes
    assert all(by_surname[surname] <= 1 for surname in surnames)
    for outcome, surname in answered:
        assert isinstance(outcome.body["position"], int)
        pupil_id = pupil_of.get(surname)
        assert pupil_id is not None, f"{outcome.step} of {surname} answered 2xx"
        personal_file = stack.records.personal_file(pupil_id)
        positions = history_positions(stack.records, pupil_id)
        assert len(positions) == len(set(positions)) == personal_file["version"]
        if outcome.step == "register":
            # The last event of a registration claims the name, after the
            # pupil's own first event.
            assert positions[0] <= outcome.body["position"], outcome
        else:
            assert outcome.body["position"] in positions, outcome
        if outcome.step == "enrol":
            enrolments = [e["id"] for e in personal_file["enrolments"]]
            assert enrolments == [outcome.body["id"]]
        if outcome.step == "attest":
            attestations = [a["id"] for a in personal_file["attestations"]]
            assert attestations == [outcome.body["id"]]


# ------------------------------------------------------- conflicting commands


class ConflictingCommands:
    """Random enrolments, expulsions and cancellations of one pupil."""

    def __init__(
        self, records: RecordsClient, pupil_id: str, programme_ids: list[str]
    ) -> None:
        self.records = records
        self.pupil_path = f"/api/v1/pupils/{pupil_id}"
        self.programme_ids = programme_ids
        self.enrolment_ids: list[str] = []
        self.expulsion_ids: list[str] = []
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()

    def commands(self) -> list[Callable[[RecordsClient, random.Random], Outcome]]:
        """Return the kinds of command a thread chooses from."""
        return [self.enrol, self.expel, self.cancel_expulsion, self.cancel_enrolment]

    def enrol(self, records: RecordsClient, rng: random.Random) -> Outcome:
        effective = rng.choice(ENROLMENT_DATES)
        body = {
            "programme_id": rng.choice(self.programme_ids),
            "effective_date": effective.isoformat(),
            "order": order(f"{rng.randrange(1, 999)}-З", effective),
        }
        path = f"{self.pupil_path}/enrolments"
        return self.keep(send(records, "enrol", path, body, "registrar"))

    def expel(self, records: RecordsClient, rng: random.Random) -> Outcome:
        effective = rng.choice(EXPULSION_DATES)
        body = {
            "programme_id": rng.choice(self.programme_ids),
            "effective_date": effective.isoformat(),
            "ground": "parents_request",
            "order": order(f"{rng.randrange(1, 999)}-О", effective),
        }
        path = f"{self.pupil_path}/expulsions"
        return self.keep(send(records, "expel", path, body, "registrar"))

    def cancel_expulsion(self, records: RecordsClient, rng: random.Random) -> Outcome:
        with self._lock:
            known = list(self.expulsion_ids)
        if not known:
            return self.expel(records, rng)
        body = {
            "reason": "Приказ издан ошибочно",
            "order": order(f"{rng.randrange(1, 999)}-О", date(2025, 6, 2)),
        }
        path = f"{self.pupil_path}/expulsions/{rng.choice(known)}/cancellation"
        return self.keep(send(records, "cancel expulsion", path, body, "registrar"))

    def cancel_enrolment(self, records: RecordsClient, rng: random.Random) -> Outcome:
        with self._lock:
            known = list(self.enrolment_ids)
        if not known:
            return self.enrol(records, rng)
        body = {
            "reason": "Зачислен ошибочно",
            "order": order(f"{rng.randrange(1, 999)}-З", date(2025, 6, 2)),
        }
        path = f"{self.pupil_path}/enrolments/{rng.choice(known)}/cancellation"
        return self.keep(send(records, "cancel enrolment", path, body, "registrar"))

    def keep(self, outcome: Outcome) -> Outcome:
        with self._lock:
            self.outcomes.append(outcome)
            if outcome.succeeded and outcome.step == "enrol":
                self.enrolment_ids.append(outcome.body["id"])
            if outcome.succeeded and outcome.step == "expel":
                self.expulsion_ids.append(outcome.body["id"])
        return outcome

    def run_thread(self, index: int, barrier: threading.Barrier) -> None:
        """Send one random command per round, all threads released together."""
        rng = random.Random(SEED + index)
        records = RecordsClient(self.records.base_url, self.records.tokens)
        try:
            for _ in range(CONFLICT_ROUNDS):
                barrier.wait(timeout=120)
                rng.choice(self.commands())(records, rng)
        finally:
            records.close()


def replayed_personal_file(stack: ProcessStack, pupil_id: str) -> dict[str, Any]:
    """Rebuild the records read models from the log and read the file again."""
    stack.stop_processes()
    result = stack.cli("records", "rebuild")
    assert result.returncode == 0, result.stderr
    stack.start()
    return stack.records.personal_file(pupil_id)


def test_conflicting_commands_match_replay(stack: ProcessStack) -> None:
    records = stack.records
    programme_ids = [records.create_programme()["id"] for _ in range(2)]
    pupil = records.register_pupil(opened_on=FILE_OPENED_ON.isoformat())
    commands = ConflictingCommands(records, pupil["id"], programme_ids)
    commands.enrol(records, random.Random(SEED))
    barrier = threading.Barrier(CONFLICT_THREADS)
    threads = [
        threading.Thread(target=commands.run_thread, args=(i, barrier), daemon=True)
        for i in range(CONFLICT_THREADS)
    ]

    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    answered = [o for o in commands.outcomes if o.succeeded]
    positions = [o.body["position"] for o in answered]
    wait_for_records(records, max(positions), CATCH_UP_TIMEOUT_SECONDS)
    served = records.personal_file(pupil["id"])
    history = history_positions(records, pupil["id"])
    replayed = replayed_personal_file(stack, pupil["id"])

    statuses = Counter(o.status for o in commands.outcomes)
    assert not any(thread.is_alive() for thread in threads)
    assert set(statuses) <= {200, 201, 409}, commands.outcomes
    assert statuses[409] > 0
    assert served["version"] == 1 + len(positions)
    assert history[1:] == sorted(positions)
    assert served == replayed
