"""Throughput of an operation run by several threads for a fixed time."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from bench.stats import Latency, rate

logger = logging.getLogger(__name__)

# A worker that raised waits this long before it tries again.
ERROR_PAUSE_SECONDS = 0.1


@dataclass(frozen=True)
class Outcome:
    """One finished operation: when it ended, how long it took, whether it worked."""

    finished_at: float
    seconds: float
    ok: bool


Worker = Callable[[], Iterable[Outcome]]


@dataclass(frozen=True)
class Throughput:
    """Operations that finished inside the measured window."""

    threads: int
    seconds: float
    operations: int
    # Successful operations of the whole run, the warm-up included.
    completed: int
    failures: int
    per_second: float
    latency: Latency | None
    first_error: str | None = None


def run_threads(
    threads: int,
    warmup: float,
    duration: float,
    make_worker: Callable[[int], Worker],
) -> Throughput:
    """Run `threads` workers for `warmup + duration` s and count the last `duration`.

    Each call of a worker performs one or more operations and returns their
    outcomes; only operations that finish inside the window are counted.
    """
    started = time.perf_counter()
    window = (started + warmup, started + warmup + duration)
    results: list[list[Outcome]] = [[] for _ in range(threads)]
    errors: list[str] = []
    runners = [
        threading.Thread(
            target=_loop,
            args=(make_worker(index), window[1], results[index], errors),
            name=f"load-{index}",
        )
        for index in range(threads)
    ]
    for runner in runners:
        runner.start()
    for runner in runners:
        runner.join()

    counted = [
        outcome
        for outcomes in results
        for outcome in outcomes
        if window[0] <= outcome.finished_at < window[1]
    ]
    good = [outcome.seconds for outcome in counted if outcome.ok]
    completed = sum(outcome.ok for outcomes in results for outcome in outcomes)
    return Throughput(
        threads=threads,
        seconds=duration,
        operations=len(good),
        completed=completed,
        failures=len(counted) - len(good) + len(errors),
        per_second=rate(len(good), duration),
        latency=Latency.of(good) if good else None,
        first_error=errors[0] if errors else None,
    )


def _loop(worker: Worker, until: float, out: list[Outcome], errors: list[str]) -> None:
    while time.perf_counter() < until:
        try:
            out.extend(worker())
        except Exception as error:  # counted as a failure; the others go on
            if not errors:
                logger.warning("benchmark worker failed: %s", error)
            errors.append(f"{type(error).__name__}: {error}")
            time.sleep(ERROR_PAUSE_SECONDS)
