"""The results as readable tables, checked against the targets, and as JSON."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.commands import CommandsResult
from bench.logsize import SizeResult, SkippedSize
from bench.retention import RetentionResult
from bench.stats import Latency

# Minimum ratio of HTTP commands per second to raw single-event saves per second.
COMMANDS_TARGET = {"sqlite": 0.3, "postgres": 0.8}
# Minimum ratio of rebuilt events per second to raw read-and-decode.
REBUILD_TARGET = 0.3
# Maximum growth of the median read latency from the smallest to the largest
# log for it to count as flat.
FLAT_GROWTH = 1.5
# Maximum p99 delay from a committed expulsion to the visible deadline.
RETENTION_P99_TARGET_MS = {"sqlite": 2000.0, "postgres": 1000.0}


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Render rows under a header as aligned columns (first column left)."""
    widths = [
        max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))
    ]

    def line(cells: Sequence[str]) -> str:
        parts = [
            str(cell).ljust(widths[i]) if i == 0 else str(cell).rjust(widths[i])
            for i, cell in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(header), rule, *(line(row) for row in rows)])


def verdict(met: bool | None) -> str:
    """Return `met`, `MISSED`, or `n/a` when the check could not be made."""
    if met is None:
        return "n/a"
    return "met" if met else "MISSED"


def commands_table(engine: str, result: CommandsResult) -> str:
    """Describe benchmark 1: HTTP commands against raw saves."""
    target = COMMANDS_TARGET[engine]
    met = None if result.ratio is None else result.ratio >= target
    http = result.http
    rows = [
        [
            f"HTTP commands ({result.clients} clients)",
            _rate(http.per_second),
            _latency(http.latency),
            str(http.failures),
        ],
        [
            "raw save(), 1 thread",
            _rate(result.raw_one_thread.per_second),
            _latency(result.raw_one_thread.latency),
            str(result.raw_one_thread.failures),
        ],
        [
            f"raw save(), {result.raw_many_threads.threads} threads",
            _rate(result.raw_many_threads.per_second),
            _latency(result.raw_many_threads.latency),
            str(result.raw_many_threads.failures),
        ],
    ]
    body = table(["1. commands", "per s", "p50 / p99 ms", "failed"], rows)
    summary = (
        f"ratio {_ratio(result.ratio)} (HTTP / best raw), target >= {target}: "
        f"{verdict(met)}; HTTP events/s {result.events_per_second:.0f}"
    )
    cpu = ", ".join(
        f"{name} {ms:.1f}" for name, ms in result.cpu_ms_per_command.items()
    )
    return f"{body}\n{summary}\nCPU ms per command: {cpu}"


def sizes_table(results: Sequence[SizeResult]) -> str:
    """Describe benchmark 2 at each size: rebuild against reading and decoding."""
    rows = [
        [
            f"{r.events:,}",
            _rate(r.rebuild_per_second),
            _rate(r.decode_records_mapper_per_second),
            _ratio(r.rebuild_ratio),
            verdict(_at_least(r.rebuild_ratio, REBUILD_TARGET)),
            _rate(r.decode_library_per_second),
            _ratio(r.rebuild_ratio_library),
        ]
        for r in results
    ]
    header = [
        "2. rebuild, events",
        "rebuild ev/s",
        "decode ev/s",
        "ratio",
        f">= {REBUILD_TARGET}",
        "plain decode ev/s",
        "ratio",
    ]
    note = (
        "decode: read in pages and decode with the records mapper, which opens "
        "the sealed fields; plain: the library's mapper, fields left sealed"
    )
    return f"{table(header, rows)}\n{note}"


def reads_table(results: Sequence[SizeResult]) -> str:
    """Describe benchmark 3: read latency at each size, and whether it stays flat."""
    measured = [r for r in results if r.reads is not None and r.raw_reads is not None]
    if not measured:
        return "3. reads: not measured"
    rows = [
        [
            f"{r.events:,}",
            _latency(r.reads),
            _latency(r.raw_reads),
            str(r.reads.samples if r.reads else 0),
        ]
        for r in measured
    ]
    body = table(
        ["3. GET /pupils/{id}, events", "HTTP p50 / p99 ms", "raw get p50 / p99", "n"],
        rows,
    )
    growth = read_growth(measured)
    if growth is None:
        return body
    p50, p99 = growth
    met = p50 <= FLAT_GROWTH if len(measured) > 1 else None
    return (
        f"{body}\ngrowth from {measured[0].events:,} to {measured[-1].events:,} "
        f"events: p50 x{p50:.2f}, p99 x{p99:.2f}; flat (p50 <= x{FLAT_GROWTH}): "
        f"{verdict(met)}"
    )


def read_growth(results: Sequence[SizeResult]) -> tuple[float, float] | None:
    """Return how much p50 and p99 grew from the first size to the last."""
    first, last = results[0].reads, results[-1].reads
    if first is None or last is None or not first.p50_ms or not first.p99_ms:
        return None
    return last.p50_ms / first.p50_ms, last.p99_ms / first.p99_ms


def skipped_line(item: SkippedSize) -> str:
    """Say which size was left out, and why."""
    return (
        f"skipped {item.target_events:,} events: estimated "
        f"{item.estimated_seconds / 60:.0f} min at the rates measured so far, "
        f"{max(0.0, item.remaining_seconds) / 60:.0f} min of the budget left "
        "(raise --budget or $BENCH_BUDGET to run it)"
    )


def retention_table(engine: str, result: RetentionResult) -> str:
    """Describe benchmark 4: expulsion to visible deadline against one raw hop."""
    target = RETENTION_P99_TARGET_MS[engine]
    rows = [
        [
            "expulsion -> deadline visible",
            _latency(result.latency),
            str(result.samples),
        ],
        [
            "raw save() -> follower sees it",
            _latency(result.raw_latency),
            str(result.samples),
        ],
    ]
    body = table(["4. propagation", "p50 / p99 ms", "n"], rows)
    met = result.latency.p99_ms < target
    return (
        f"{body}\nratio of p99 {_ratio(result.ratio_p99)}; target p99 < "
        f"{target:.0f} ms: {verdict(met)}"
    )


def memory_table(phases: dict[str, dict[str, float]]) -> str:
    """Describe benchmark 5: peak resident memory per process and phase, MiB."""
    names = sorted({name for peaks in phases.values() for name in peaks})
    rows = [
        [name, *(_mib(peaks.get(name)) for peaks in phases.values())] for name in names
    ]
    return table(["5. peak RSS, MiB", *phases], rows)


def to_jsonable(value: Any) -> Any:
    """Turn result dataclasses into plain JSON values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(key): to_jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_jsonable(item) for item in value]
    if isinstance(value, Path):
        return str(value)
    return value


def write_json(path: Path, report: dict[str, Any]) -> None:
    """Write the report as indented JSON, replacing the file in one step."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(
        json.dumps(to_jsonable(report), indent=2, ensure_ascii=False) + "\n",
        encoding="utf-8",
    )
    temporary.replace(path)


def _at_least(value: float | None, target: float) -> bool | None:
    return None if value is None else value >= target


def _rate(value: float) -> str:
    return f"{value:,.0f}"


def _ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def _latency(value: Latency | None) -> str:
    if value is None:
        return "n/a"
    return f"{value.p50_ms:.1f} / {value.p99_ms:.1f}"


def _mib(value: float | None) -> str:
    return "" if value is None else f"{value:.0f}"
