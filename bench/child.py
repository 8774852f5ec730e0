"""Work the benchmark runs in a fresh process of its own, to time it and its memory.

`python -m bench.child rebuild` replays the records log into the read models
with `services.records.projector.rebuild`. `python -m bench.child decode`
reads the same log in pages and decodes every event twice: with the library's
plain mapper, and with the records mapper, which also opens sealed fields.
Settings come from the environment, as in the services' own processes. The
result is one JSON object on standard output, with wall and CPU seconds (the
CPU of this process only, so not the PostgreSQL server's) and the process's
peak resident memory.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import resource
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from eventsourcing.persistence import Mapper

from bench.raw import read_and_decode
from services.records.application import RecordsApplication
from shared.config import Settings

PROFILE_LINES = 40


def rebuild() -> dict[str, Any]:
    """Rebuild the read models from the whole log and time it."""
    from services.records.projector import rebuild as rebuild_read_models

    started, cpu = time.perf_counter(), time.process_time()
    events = rebuild_read_models(Settings.from_env(), progress=False)
    return {
        "events": events,
        "seconds": time.perf_counter() - started,
        "cpu_seconds": time.process_time() - cpu,
    }


def decode() -> dict[str, Any]:
    """Read and decode the whole log with the plain mapper and the records one."""
    settings = Settings.from_env()
    app = RecordsApplication(settings.records_database_url)
    try:
        plain = Mapper(transcoder=app.construct_transcoder())
        library = read_and_decode(app.recorder, plain)
        sealed = read_and_decode(app.recorder, app.mapper)
    finally:
        app.close()
    return {"library": asdict(library), "records_mapper": asdict(sealed)}


TASKS = {"rebuild": rebuild, "decode": decode}


def main(argv: list[str] | None = None) -> None:
    """Run one task and print its result as JSON."""
    parser = argparse.ArgumentParser(prog="python -m bench.child")
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--profile", type=Path, help="write a cProfile summary here")
    args = parser.parse_args(argv)

    if args.profile is None:
        result = TASKS[args.task]()
    else:
        profiler = cProfile.Profile()
        result = profiler.runcall(TASKS[args.task])
        args.profile.write_text(_profile_summary(profiler), encoding="utf-8")
    # ru_maxrss is in KiB on Linux.
    result["max_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    json.dump(result, sys.stdout)


def _profile_summary(profiler: cProfile.Profile) -> str:
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(PROFILE_LINES)
    stats.sort_stats("tottime").print_stats(PROFILE_LINES)
    return out.getvalue()


if __name__ == "__main__":
    main()
