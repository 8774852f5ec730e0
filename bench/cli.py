"""`python -m bench`: run the benchmarks, print the tables, write the JSON.

Every option can also be set by an environment variable (in brackets in
`--help`), which is how `make bench` takes them, e.g.
`make bench BENCH_ENGINES=sqlite BENCH_SIZES=10k,100k`.
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

from bench import report
from bench.commands import run_commands
from bench.logsize import SizeResult, run_sizes
from bench.machine import code_revision, describe_machine, load_average
from bench.postgres import PostgresServer, connect_server, start_server
from bench.retention import run_retention
from bench.stores import ENGINES, Backend

BENCHMARKS = ("commands", "retention", "rebuild", "reads")
DEFAULT_SIZES = "10k,100k,1M"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
_SIZE = re.compile(r"(\d+(?:\.\d+)?)([kKmM]?)")
_MULTIPLIERS = {"": 1, "k": 1_000, "m": 1_000_000}


class UsageError(ValueError):
    """An option has an invalid value."""


@dataclass(frozen=True)
class Options:
    """The chosen benchmarks, engines, sizes and durations; see `--help`."""

    engines: tuple[str, ...]
    benchmarks: tuple[str, ...]
    sizes: tuple[int, ...]
    clients: int
    duration: float
    warmup: float
    samples: int
    reads: int
    workers: int
    seed: int
    postgres_url: str | None
    budget_minutes: float
    output: Path
    keep: bool
    profile: bool


def parse_size(text: str) -> int:
    """Parse an event count such as `10000`, `10k` or `1M`."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise UsageError(
            f"invalid size {text!r}: give a count such as 10000, 10k or 1M"
        )
    value = float(match.group(1)) * _MULTIPLIERS[match.group(2).lower()]
    if value < 1:
        raise UsageError(f"invalid size {text!r}: it must be at least 1 event")
    return int(value)


def parse_list(text: str, allowed: Sequence[str], what: str) -> tuple[str, ...]:
    """Parse a comma-separated list whose items must be in `allowed`."""
    items = tuple(item.strip() for item in text.split(",") if item.strip())
    unknown = [item for item in items if item not in allowed]
    if unknown or not items:
        raise UsageError(
            f"invalid {what} {text!r}: choose from {', '.join(allowed)}, "
            "comma-separated"
        )
    return items


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of `python -m bench`, with defaults from the environment."""
    env = os.environ
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Benchmark pupil-records against the raw eventsourcing library.",
    )

    def option(flag: str, variable: str, default: str, help_text: str) -> None:
        parser.add_argument(
            flag,
            default=env.get(variable) or default,
            help=f"{help_text} (${variable}; default: {default})",
        )

    option("--engines", "BENCH_ENGINES", ",".join(ENGINES), "database engines")
    option("--only", "BENCH_ONLY", ",".join(BENCHMARKS), "benchmarks to run")
    option("--sizes", "BENCH_SIZES", DEFAULT_SIZES, "log sizes in events")
    option("--clients", "BENCH_CLIENTS", "8", "HTTP client threads of benchmark 1")
    option("--duration", "BENCH_DURATION", "20", "seconds each throughput is measured")
    option("--warmup", "BENCH_WARMUP", "3", "seconds run before each measurement")
    option("--samples", "BENCH_SAMPLES", "200", "expulsions timed by benchmark 4")
    option("--reads", "BENCH_READS", "2000", "GET requests per log size")
    option(
        "--workers",
        "BENCH_WORKERS",
        str(os.cpu_count() or 1),
        "processes that write the generated log",
    )
    option("--seed", "BENCH_SEED", "2024", "seed of the generated data")
    option(
        "--postgres-url",
        "BENCH_POSTGRES_URL",
        "",
        "admin URL of an existing PostgreSQL server to create databases on; "
        "empty starts a throwaway server from the local binaries",
    )
    option(
        "--budget",
        "BENCH_BUDGET",
        "30",
        "minutes the whole run may take, shared equally by the engines; a log "
        "size whose estimated time does not fit is skipped and reported",
    )
    option("--output", "BENCH_OUTPUT", str(RESULTS_DIR), "folder of the results")
    parser.add_argument(
        "--keep",
        action="store_true",
        default=_flag(env.get("BENCH_KEEP")),
        help="keep the databases and logs in the work folder ($BENCH_KEEP=1)",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        default=_flag(env.get("BENCH_PROFILE")),
        help="write a cProfile summary of each rebuild ($BENCH_PROFILE=1)",
    )
    return parser


def parse_options(argv: Sequence[str] | None = None) -> Options:
    """Parse the command line; raise UsageError on an invalid value."""
    args = build_parser().parse_args(argv)
    return Options(
        engines=parse_list(args.engines, ENGINES, "engines"),
        benchmarks=parse_list(args.only, BENCHMARKS, "benchmarks"),
        sizes=tuple(sorted({parse_size(s) for s in args.sizes.split(",") if s})),
        clients=_positive(args.clients, "--clients", int),
        duration=_positive(args.duration, "--duration", float),
        warmup=_at_least_zero(args.warmup, "--warmup"),
        samples=_positive(args.samples, "--samples", int),
        reads=_positive(args.reads, "--reads", int),
        workers=_positive(args.workers, "--workers", int),
        seed=int(_positive(args.seed, "--seed", int)),
        postgres_url=args.postgres_url or None,
        budget_minutes=_positive(args.budget, "--budget", float),
        output=Path(args.output),
        keep=args.keep,
        profile=args.profile,
    )


def main(argv: Sequence[str] | None = None) -> None:
    """Run the chosen benchmarks on each engine and report them."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    try:
        options = parse_options(argv)
    except UsageError as error:
        sys.exit(f"python -m bench: {error}")
    if not options.sizes and _needs_log(options):
        sys.exit("python -m bench: --sizes is empty")
    run(options, sys.stdout)


def run(options: Options, out: IO[str]) -> dict[str, Any]:
    """Run every chosen benchmark; print tables to `out`; return the report."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    options.output.mkdir(parents=True, exist_ok=True)
    json_path = options.output / f"bench-{stamp}.json"
    work = Path(tempfile.mkdtemp(prefix="pupil-records-bench-"))
    result: dict[str, Any] = {
        "started_at": stamp,
        "machine": describe_machine(),
        "revision": code_revision(Path(__file__).resolve().parent.parent),
        "options": options,
        "engines": {},
    }
    _say(f"work folder {work}; results go to {json_path}")

    def save() -> None:
        report.write_json(json_path, result)

    server: PostgresServer | None = None
    finished = False
    try:
        with open(work / "services.log", "a", encoding="utf-8") as log:
            for engine in options.engines:
                if engine == "postgres" and server is None:
                    server = _postgres(options)
                backend = Backend(engine, work, server)
                section: dict[str, Any] = {"version": backend.version()}
                result["engines"][engine] = section
                print(f"\n== {backend.version()} ==", file=out, flush=True)
                run_engine(options, backend, section, log, out, save)
        result["finished_at"] = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        save()
        print(f"\nresults: {json_path}", file=out, flush=True)
        finished = True
    finally:
        if server is not None:
            server.stop()
        if options.keep or not finished:
            # After a failure the service logs in the work folder explain it.
            _say(f"kept {work}; the service output is in {work / 'services.log'}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return result


def run_engine(
    options: Options,
    backend: Backend,
    section: dict[str, Any],
    log: IO[str],
    out: IO[str],
    save: Callable[[], None],
) -> None:
    """Run the chosen benchmarks on one engine, saving after each one."""
    engine = backend.engine
    deadline = time.monotonic() + options.budget_minutes * 60 / len(options.engines)
    memory: dict[str, dict[str, float]] = {}
    section["memory_mib"] = memory

    if "commands" in options.benchmarks:
        commands = _timed(
            section,
            "commands",
            lambda: run_commands(
                backend.fresh("commands"),
                clients=options.clients,
                warmup=options.warmup,
                duration=options.duration,
                seed=options.seed,
                log=log,
                database_pid=backend.database_pid(),
            ),
        )
        memory["commands"] = commands.memory_mib
        print(report.commands_table(engine, commands), file=out, flush=True)
        save()

    if "retention" in options.benchmarks:
        retention = _timed(
            section,
            "retention",
            lambda: run_retention(
                backend.fresh("retention"),
                samples=options.samples,
                seed=options.seed,
                log=log,
            ),
        )
        memory["retention"] = retention.memory_mib
        print(report.retention_table(engine, retention), file=out, flush=True)
        save()

    if _needs_log(options):
        sizes: list[SizeResult] = []
        section["sizes"] = sizes

        def size_done(result: SizeResult) -> None:
            sizes.append(result)
            memory[f"rebuild {result.events:,}"] = {
                "rebuild (one process)": result.rebuild_max_rss_mib
            }
            if result.memory_mib:
                memory[f"reads {result.events:,}"] = result.memory_mib
            _say(f"{engine}: log of {result.events:,} events measured")
            save()

        profile_dir = None
        if options.profile:
            profile_dir = options.output / f"profiles-{engine}"
        _, skipped = _timed(
            section,
            "sizes",
            lambda: run_sizes(
                backend.fresh("log"),
                list(options.sizes),
                reads=options.reads if "reads" in options.benchmarks else 0,
                workers=options.workers,
                seed=options.seed,
                log=log,
                deadline=deadline,
                profile_dir=profile_dir,
                report=size_done,
            ),
        )
        section["sizes"] = sizes
        section["skipped_sizes"] = skipped
        print(report.sizes_table(sizes), file=out, flush=True)
        if "reads" in options.benchmarks:
            print(report.reads_table(sizes), file=out, flush=True)
        for item in skipped:
            print(report.skipped_line(item), file=out, flush=True)

    if memory:
        print(report.memory_table(memory), file=out, flush=True)
    save()


def _timed(section: dict[str, Any], name: str, work: Callable[[], Any]) -> Any:
    """Run one benchmark, noting its wall time and the load average around it."""
    _say(f"running {name} (load average {load_average():.1f})")
    started = time.perf_counter()
    load_before = load_average()
    value = work()
    section[name] = value
    section.setdefault("timing", {})[name] = {
        "seconds": round(time.perf_counter() - started, 1),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    return value


def _postgres(options: Options) -> PostgresServer:
    if options.postgres_url:
        return connect_server(options.postgres_url)
    _say("starting a throwaway PostgreSQL server")
    return start_server()


def _needs_log(options: Options) -> bool:
    return "rebuild" in options.benchmarks or "reads" in options.benchmarks


def _say(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"1", "true", "yes", "on"}


def _positive(text: str, name: str, kind: Callable[[str], Any]) -> Any:
    try:
        value = kind(text)
    except ValueError:
        raise UsageError(f"{name}={text!r} is not a number") from None
    if value <= 0:
        raise UsageError(f"{name}={text!r} must be positive")
    return value


def _at_least_zero(text: str, name: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"{name}={text!r} is not a number") from None
    if value < 0:
        raise UsageError(f"{name}={text!r} must not be negative")
    return value
