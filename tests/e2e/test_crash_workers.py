"""SIGKILL of the records projector and the archive follower under writes.

A writer streams commands over HTTP while the test kills the two workers at
seeded random moments and starts them again. Once both have caught up, the
read models must equal those that `records rebuild` and `archive rebuild`
make from the logs: a batch cut by SIGKILL is rolled back whole and applied
once after the restart, never twice.
"""

from __future__ import annotations

import os
import random
import threading
import time
from datetime import date

import pytest

from tests.e2e.helpers import (
    ProcessStack,
    Workload,
    assert_same_dumps,
    dump_archive,
    dump_records,
    requires_services,
    wait_for_archive,
    wait_for_records,
)

pytestmark = [pytest.mark.e2e, requires_services]

# Set PUPIL_RECORDS_CRASH_SEED to replay another sequence of kills.
SEED = int(os.environ.get("PUPIL_RECORDS_CRASH_SEED", "20250531"))
# The writer stops once every kill is done, or after MAX_COMMANDS commands.
MAX_COMMANDS = 2000
KILLS = 8
WORKERS = ("records-projector", "archive-follower")
CATCH_UP_TIMEOUT_SECONDS = 120.0
# Statuses are computed on a fixed date, so both dumps agree on them.
STATUS_DATE = date(2031, 6, 1)


def kill_workers_at_random(stack: ProcessStack, rng: random.Random) -> list[str]:
    """Kill one or both workers KILLS times at random moments, restarting them."""
    kills: list[str] = []
    for _ in range(KILLS):
        time.sleep(rng.uniform(0.2, 1.5))
        victims = rng.choice([WORKERS[:1], WORKERS[1:], WORKERS])
        for name in victims:
            stack.kill(name)
            kills.append(name)
        time.sleep(rng.uniform(0.0, 0.8))
        for name in victims:
            stack.restart(name)
    return kills


def rebuild_read_models(stack: ProcessStack) -> None:
    """Stop the services, rebuild both services' read models and start again."""
    stack.stop_processes()
    for service in ("records", "archive"):
        result = stack.cli(service, "rebuild")
        assert result.returncode == 0, result.stderr
    stack.start()


def test_killed_workers_match_rebuild(stack: ProcessStack) -> None:
    # The writer thread and the killer draw from generators of their own, so
    # each draws the same sequence from the seed whatever the interleaving.
    workload = Workload(stack.records, random.Random(SEED))
    workload.prepare()
    stop = threading.Event()
    writer = threading.Thread(
        target=workload.run, args=(MAX_COMMANDS, stop), daemon=True
    )

    writer.start()
    kills = kill_workers_at_random(stack, random.Random(SEED + 1))
    stop.set()
    writer.join(timeout=60)
    closures = workload.close_journals()
    position = workload.last_position
    wait_for_records(stack.records, position, CATCH_UP_TIMEOUT_SECONDS)
    wait_for_archive(stack.archive, position, CATCH_UP_TIMEOUT_SECONDS)
    pupil_ids = sorted(workload.pupils)
    journal_ids = [journal.id for journal in workload.journals]
    records = dump_records(stack.records, pupil_ids, journal_ids)
    archive = dump_archive(stack.archive, pupil_ids, journal_ids, STATUS_DATE)

    rebuild_read_models(stack)
    wait_for_records(stack.records, position, CATCH_UP_TIMEOUT_SECONDS)
    rebuilt_records = dump_records(stack.records, pupil_ids, journal_ids)
    rebuilt_archive = dump_archive(stack.archive, pupil_ids, journal_ids, STATUS_DATE)

    failed = [o for o in workload.outcomes if not o.succeeded]
    assert not writer.is_alive()
    assert failed == [], f"seed {SEED}: {failed}"
    assert all(outcome.succeeded for outcome in closures)
    assert set(kills) == set(WORKERS), f"seed {SEED} killed only {kills}"
    assert_same_dumps(records, rebuilt_records)
    assert_same_dumps(archive, rebuilt_archive)
    for pupil_id in pupil_ids:
        personal_file = records[f"pupil {pupil_id}"]
        history = records[f"history {pupil_id}"]
        assert personal_file["attendance"] == workload.expected_attendance(pupil_id)
        assert len(history) == personal_file["version"]
        retention = archive[f"retention {pupil_id}"]
        assert retention["closed_on"] == personal_file["file_closed_on"]
