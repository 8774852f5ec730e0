"""Benchmarks 2 and 3 on a log grown to each size in turn.

At each size the log is first read and decoded as the bare library would,
which is the baseline of the rebuild. Then the read models are rebuilt from
it with `services.records.projector.rebuild`. Last, `GET /api/v1/pupils/{id}`
is timed through the real records web service, next to the library's own way
to read a pupil, `repository.get()`, which replays the pupil's events.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any
from uuid import UUID

from bench.client import JsonClient
from bench.generate import LogBuilder, open_records
from bench.processes import MemoryWatch, ServiceProcesses
from bench.stats import Latency, rate, ratio
from shared.config import Settings

PROJECT_ROOT = Path(__file__).resolve().parent.parent
CHILD_TIMEOUT_SECONDS = 4 * 3600
READ_THREADS = 2
WARMUP_READS = 100


class ChildFailedError(RuntimeError):
    """A benchmark child process failed; the message contains its error output."""


@dataclass(frozen=True)
class SizeResult:
    """Rebuild rate, its baseline and read latencies at one size of the log."""

    target_events: int
    events: int
    added_events: int
    pupils: int
    generate_seconds: float
    decode_library_per_second: float
    decode_records_mapper_per_second: float
    rebuild_per_second: float
    rebuild_seconds: float
    rebuild_cpu_seconds: float
    # Against reading and decoding with the records mapper, which every
    # rebuild of this log must do, and against the library's plain mapper.
    rebuild_ratio: float | None
    rebuild_ratio_library: float | None
    rebuild_max_rss_mib: float
    reads: Latency | None = None
    raw_reads: Latency | None = None
    reads_seconds: float = 0.0
    memory_mib: dict[str, float] = field(default_factory=dict)
    # What the decode and rebuild processes reported, CPU seconds included.
    child_outputs: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SkippedSize:
    """A size left out because it would not finish within the time budget."""

    target_events: int
    estimated_seconds: float
    remaining_seconds: float


def run_sizes(
    settings: Settings,
    sizes: list[int],
    *,
    reads: int,
    workers: int,
    seed: int,
    log: IO[str],
    deadline: float | None = None,
    profile_dir: Path | None = None,
    report: Callable[[SizeResult], None] | None = None,
) -> tuple[list[SizeResult], list[SkippedSize]]:
    """Grow one log through `sizes` (ascending) and measure at each size.

    With `reads` = 0 the read latency is not measured. Each size after the
    first runs only if its time, estimated from the rates measured at the size
    before, ends before `deadline`, a `time.monotonic()` value. The sizes left
    out are returned as skipped. `report` is called with each size's result as
    soon as it is known.
    """
    ordered = sorted(sizes)
    builder = LogBuilder(settings, seed=seed, workers=workers, steps=len(ordered))
    results: list[SizeResult] = []
    for index, size in enumerate(ordered):
        if results and deadline is not None:
            estimate = estimate_seconds(results[-1], size)
            remaining = deadline - time.monotonic()
            if estimate > remaining:
                skipped = [
                    SkippedSize(s, estimate_seconds(results[-1], s), remaining)
                    for s in ordered[index:]
                ]
                return results, skipped
        result = _run_size(settings, builder, size, reads, seed, log, profile_dir)
        results.append(result)
        if report is not None:
            report(result)
    return results, []


def estimate_seconds(previous: SizeResult, size: int) -> float:
    """Estimate how long measuring a log of `size` events takes after `previous`.

    The time to generate the missing events, decode the log twice and rebuild
    it is scaled from the rates measured at `previous`. The reads are taken to
    last as long as they did there.
    """
    added = max(0, size - previous.events)
    generate_rate = previous.added_events / previous.generate_seconds
    per_event = (
        1 / previous.decode_library_per_second
        + 1 / previous.decode_records_mapper_per_second
        + 1 / previous.rebuild_per_second
    )
    return added / generate_rate + size * per_event + previous.reads_seconds


def _run_size(
    settings: Settings,
    builder: LogBuilder,
    size: int,
    reads: int,
    seed: int,
    log: IO[str],
    profile_dir: Path | None,
) -> SizeResult:
    before = builder.head()
    started = time.perf_counter()
    head = builder.grow_to(size)
    generated = time.perf_counter() - started
    print(f"log of {head} events written in {generated:.0f} s", file=log, flush=True)

    decoded = run_child("decode", settings)
    profile = None if profile_dir is None else profile_dir / f"rebuild-{size}.txt"
    rebuilt = run_child("rebuild", settings, profile)
    library = rate(decoded["library"]["events"], decoded["library"]["seconds"])
    sealed = rate(
        decoded["records_mapper"]["events"], decoded["records_mapper"]["seconds"]
    )
    rebuild_rate = rate(rebuilt["events"], rebuilt["seconds"])
    result = SizeResult(
        target_events=size,
        events=head,
        added_events=head - before,
        pupils=len(builder.pupil_ids),
        generate_seconds=generated,
        decode_library_per_second=library,
        decode_records_mapper_per_second=sealed,
        rebuild_per_second=rebuild_rate,
        rebuild_seconds=rebuilt["seconds"],
        rebuild_cpu_seconds=rebuilt["cpu_seconds"],
        rebuild_ratio=ratio(rebuild_rate, sealed),
        rebuild_ratio_library=ratio(rebuild_rate, library),
        rebuild_max_rss_mib=rebuilt["max_rss_mib"],
        child_outputs={"decode": decoded, "rebuild": rebuilt},
    )
    if reads <= 0:
        return result

    rng = random.Random(seed + size)
    sample = [rng.choice(builder.pupil_ids) for _ in range(reads)]
    started = time.perf_counter()
    http, memory = measure_http_reads(settings, sample, log)
    raw = measure_repository_reads(settings, sample)
    return dataclasses.replace(
        result,
        reads=http,
        raw_reads=raw,
        reads_seconds=time.perf_counter() - started,
        memory_mib=memory,
    )


def run_child(
    task: str, settings: Settings, profile: Path | None = None
) -> dict[str, Any]:
    """Run `python -m bench.child TASK` with the settings' environment."""
    env = {**os.environ, **settings.with_env()}
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (env.get("PYTHONPATH"), str(PROJECT_ROOT)) if part
    )
    command = [sys.executable, "-m", "bench.child", task]
    if profile is not None:
        profile.parent.mkdir(parents=True, exist_ok=True)
        command += ["--profile", str(profile)]
    completed = subprocess.run(
        command,
        env=env,
        capture_output=True,
        text=True,
        timeout=CHILD_TIMEOUT_SECONDS,
        check=False,
    )
    if completed.returncode != 0:
        raise ChildFailedError(
            f"bench.child {task} exited with {completed.returncode}:\n"
            f"{completed.stderr[-4000:]}"
        )
    result: dict[str, Any] = json.loads(completed.stdout)
    return result


def measure_http_reads(
    settings: Settings, pupil_ids: list[UUID], log: IO[str]
) -> tuple[Latency, dict[str, float]]:
    """Time `GET /api/v1/pupils/{id}` of each id through the records web service."""
    processes = ServiceProcesses(settings, ["records-web"], log)
    processes.start()
    watch = MemoryWatch().watch(processes.pids())
    try:
        latencies = _read_all(processes, pupil_ids)
        processes.check_running()
    finally:
        memory = watch.stop()
        processes.stop()
    return Latency.of(latencies), memory


def _read_all(processes: ServiceProcesses, pupil_ids: list[UUID]) -> list[float]:
    shares = [pupil_ids[index::READ_THREADS] for index in range(READ_THREADS)]
    results: list[list[float]] = [[] for _ in shares]
    errors: list[BaseException] = []

    def read(index: int) -> None:
        client = JsonClient(processes.records_url, processes.tokens)
        try:
            for pupil_id in shares[index][:WARMUP_READS]:
                _read_file(client, pupil_id)
            results[index] = [_read_file(client, p) for p in shares[index]]
        except BaseException as error:
            errors.append(error)
        finally:
            client.close()

    threads = [threading.Thread(target=read, args=(i,)) for i in range(len(shares))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return [seconds for share in results for seconds in share]


def _read_file(client: JsonClient, pupil_id: UUID) -> float:
    reply = client.get(f"/api/v1/pupils/{pupil_id}", "registrar")
    body = client.expect(reply, 200)
    if body.get("id") != str(pupil_id):
        raise RuntimeError(f"GET of pupil {pupil_id} returned {body.get('id')}")
    return reply.seconds


def measure_repository_reads(settings: Settings, pupil_ids: list[UUID]) -> Latency:
    """Time the library's `repository.get()` of each pupil, in this process."""
    app = open_records(settings)
    try:
        for pupil_id in pupil_ids[:WARMUP_READS]:
            app.repository.get(pupil_id)
        latencies = []
        for pupil_id in pupil_ids:
            started = time.perf_counter()
            app.repository.get(pupil_id)
            latencies.append(time.perf_counter() - started)
    finally:
        app.close()
    return Latency.of(latencies)
