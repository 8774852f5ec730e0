"""Benchmark 4: from a committed expulsion to the archive deadline, across services.

The four processes run as `pupil-records run` starts them. Pupils are
registered and enrolled first. Then, one at a time with a random pause, each
is expelled, and the command returns after its commit. Right after, the
archive's `GET /api/v1/retention/personal-files/{id}?min_position=P` is sent
with the expulsion's position P. The archive responds once it has processed
P. It polls its read model every 20-50 ms while it waits (the web layer's
`wait_for_position`), so a sample may exceed the true delay by up to 50 ms.
The sample ends when the response carries the deadline (`destroyable_from`).

The path is: records web commits; the feed's long-poll wakes; the follower
applies the page to the archive's store; the archive projector updates the
entry; the archive web responds. The baseline is one hop with the bare
library: from `save()` of a minimal aggregate until a follower of the log
receives it.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from datetime import date
from typing import IO, Any

from bench.client import JsonClient
from bench.commands import PupilCycle, SchoolYear, create_programme
from bench.people import PupilNames
from bench.processes import MemoryWatch, ServiceProcesses
from bench.raw import measure_propagation, raw_application, raw_url
from bench.stats import Latency, ratio
from shared.config import Settings
from shared.storage import is_postgres

PROCESSES = ("records-web", "records-projector", "archive-web", "archive-follower")
PAUSE_SECONDS = (0.05, 0.25)
CATCH_UP_TIMEOUT_SECONDS = 300.0
SAMPLE_TIMEOUT_SECONDS = 60.0
RETRY_PAUSE_SECONDS = 0.05


class DeadlineMissingError(RuntimeError):
    """The archive reached the expulsion's position but returned no deadline."""


@dataclass(frozen=True)
class RetentionResult:
    """Delay from expulsion to visible deadline, and the library's one-hop delay."""

    samples: int
    latency: Latency
    raw_latency: Latency
    ratio_p99: float | None
    retries: int
    memory_mib: dict[str, float] = field(default_factory=dict)


def run_retention(
    settings: Settings, *, samples: int, seed: int, log: IO[str]
) -> RetentionResult:
    """Measure the expulsion-to-deadline delay and the library's baseline."""
    processes = ServiceProcesses(settings, list(PROCESSES), log)
    processes.start()
    watch = MemoryWatch().watch(processes.pids())
    try:
        latencies, retries = _measure(processes, samples, seed)
        processes.check_running()
    finally:
        memory = watch.stop()
        processes.stop()

    url = raw_url(settings)
    with raw_application(url) as app:
        raw = measure_propagation(
            app,
            listen=is_postgres(url),
            samples=samples,
            pause=PAUSE_SECONDS,
            seed=seed,
        )
    latency = Latency.of(latencies)
    return RetentionResult(
        samples=samples,
        latency=latency,
        raw_latency=raw,
        ratio_p99=ratio(latency.p99_ms, raw.p99_ms),
        retries=retries,
        memory_mib=memory,
    )


def _measure(
    processes: ServiceProcesses, samples: int, seed: int
) -> tuple[list[float], int]:
    records = JsonClient(processes.records_url, processes.tokens)
    archive = JsonClient(processes.archive_url, processes.tokens)
    try:
        cycles, position = _enrolled_pupils(records, samples, seed)
        _wait_for_archive(archive, position)
        rng = random.Random(seed)
        latencies: list[float] = []
        retries = 0
        for cycle in cycles:
            time.sleep(rng.uniform(*PAUSE_SECONDS))
            seconds, tries = _expel_and_wait(cycle, archive)
            latencies.append(seconds)
            retries += tries
        return latencies, retries
    finally:
        records.close()
        archive.close()


def _enrolled_pupils(
    records: JsonClient, count: int, seed: int
) -> tuple[list[PupilCycle], int]:
    """Register and enrol `count` pupils; return them and the last position."""
    programme = create_programme(records, 0)
    year = SchoolYear.last_finished(date.today())
    names = PupilNames(random.Random(seed))
    cycles = []
    for _ in range(count):
        cycle = PupilCycle(records, programme, year, names)
        for step in ("register", "enrol"):
            if not cycle.send(step).ok:
                raise RuntimeError(f"the {step} command failed while preparing")
        cycles.append(cycle)
    return cycles, max(cycle.last_position for cycle in cycles)


def _wait_for_archive(archive: JsonClient, position: int) -> None:
    deadline = time.monotonic() + CATCH_UP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        reply = archive.get("/api/v1/status", "archivist")
        if reply.status == 200 and reply.body["processed_position"] >= position:
            return
        time.sleep(0.2)
    raise TimeoutError(
        f"the archive did not process records position {position} within "
        f"{CATCH_UP_TIMEOUT_SECONDS:.0f} s"
    )


def _expel_and_wait(cycle: PupilCycle, archive: JsonClient) -> tuple[float, int]:
    """Expel the cycle's pupil; return seconds until the deadline shows, and retries."""
    if not cycle.send("expel").ok:
        raise RuntimeError(f"the expulsion of pupil {cycle.pupil_id} failed")
    committed = time.perf_counter()
    path = f"/api/v1/retention/personal-files/{cycle.pupil_id}"
    retries = 0
    while time.perf_counter() - committed < SAMPLE_TIMEOUT_SECONDS:
        reply = archive.get(path, "archivist", min_position=cycle.last_position)
        if reply.status == 200:
            _check_deadline(reply.body, cycle)
            return time.perf_counter() - committed, retries
        retries += 1
        if reply.status != 503:
            # 503 comes after the archive's own wait; anything else at once.
            time.sleep(RETRY_PAUSE_SECONDS)
    raise TimeoutError(
        f"no deadline for pupil {cycle.pupil_id} within {SAMPLE_TIMEOUT_SECONDS:.0f} s"
    )


def _check_deadline(entry: dict[str, Any], cycle: PupilCycle) -> None:
    if entry.get("destroyable_from") is None:
        raise DeadlineMissingError(
            f"the archive reached position {cycle.last_position} but the file of "
            f"pupil {cycle.pupil_id} has no deadline: {entry}"
        )
