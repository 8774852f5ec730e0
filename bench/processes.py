"""The service processes, started as `pupil-records run` does, and their memory.

`ServiceProcesses` starts some or all of the four processes through the same
process specs and supervisor as `pupil-records run` (gunicorn for the two web
services, the CLI for the projector and the follower). `MemoryWatch` samples
the peak resident set size (`VmHWM` in `/proc/PID/status`, Linux only) of each
process and of its children, such as gunicorn's workers.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import threading
from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO

from services import runner
from shared.config import Settings

READY_TIMEOUT_SECONDS = 120.0
MEMORY_SAMPLE_SECONDS = 0.5
WEB_PROCESSES = {"records-web", "archive-web"}


class ProcessFailedError(RuntimeError):
    """A service process ended while a benchmark needed it."""


class ServiceProcesses:
    """Some of the four service processes on free local ports."""

    def __init__(self, settings: Settings, names: Sequence[str], log: IO[str]) -> None:
        self.tokens = runner.ensure_local_tokens(settings)
        records_port, archive_port = _free_ports(2)
        self.records_url = f"http://{runner.HOST}:{records_port}"
        self.archive_url = f"http://{runner.HOST}:{archive_port}"
        settings = dataclasses.replace(
            settings,
            records_url=self.records_url,
            archive_feed_token=self.tokens["subscriber"],
        )
        specs = runner.process_specs(settings, records_port, archive_port)
        unknown = set(names) - {spec.name for spec in specs}
        if unknown:
            raise ValueError(f"unknown service processes: {sorted(unknown)}")
        chosen = [spec for spec in specs if spec.name in names]
        sink = runner.OutputSink(log, max(len(spec.name) for spec in chosen))
        self.supervisor = runner.Supervisor(chosen, runner.logs_dir(settings), sink)
        self._web_urls = {
            "records-web": self.records_url,
            "archive-web": self.archive_url,
        }

    def start(self) -> None:
        """Start the processes and wait until every web service is ready."""
        self.supervisor.start_all()
        probes = [
            f"{self._web_urls[child.name]}/{path}"
            for child in self.supervisor.children
            if child.name in WEB_PROCESSES
            for path in ("healthz", "readyz")
        ]
        runner.wait_until_ready(
            self.supervisor, probes, threading.Event(), READY_TIMEOUT_SECONDS
        )

    def pids(self) -> dict[str, int]:
        """Return the pid of each running process by its name, e.g. `records-web`."""
        return {
            child.name: child.process.pid
            for child in self.supervisor.children
            if child.process is not None
        }

    def check_running(self) -> None:
        """Raise ProcessFailedError if a process has ended."""
        for child in self.supervisor.children:
            code = child.exit_code()
            if code is not None:
                raise ProcessFailedError(
                    f"{child.name} {runner.describe_exit(code)}; "
                    f"its output is in {child.log_file}"
                )

    def stop(self) -> None:
        """Stop every process; kill what does not stop in time."""
        self.supervisor.stop_all()


class MemoryWatch:
    """Tracks the peak resident memory of processes and their children, in MiB.

    A gunicorn master's children are reported as `<name> worker`, the master
    itself as `<name> master`; other processes under their own name.
    """

    def __init__(self, interval: float = MEMORY_SAMPLE_SECONDS) -> None:
        self.interval = interval
        self.peaks: dict[str, float] = {}
        self._roots: dict[str, int] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def watch(self, roots: dict[str, int]) -> MemoryWatch:
        """Start sampling the processes `roots` (name to pid) in a thread."""
        self._roots = dict(roots)
        self._thread = threading.Thread(target=self._run, name="memory-watch")
        self._thread.daemon = True
        self._thread.start()
        return self

    def sample(self) -> None:
        """Read the peak of every watched process now."""
        children = _children_by_parent()
        for name, pid in self._roots.items():
            kids = children.get(pid, [])
            if name in WEB_PROCESSES:
                self._record(f"{name} master", [pid])
                self._record(f"{name} worker", kids)
            else:
                self._record(name, [pid, *kids])

    def stop(self) -> dict[str, float]:
        """Take a last sample, stop the thread and return the peaks."""
        self.sample()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        return dict(self.peaks)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def _record(self, name: str, pids: Iterable[int]) -> None:
        for pid in pids:
            peak = peak_rss_mib(pid)
            if peak is None:
                continue
            with self._lock:
                self.peaks[name] = max(self.peaks.get(name, 0.0), peak)


def peak_rss_mib(pid: int) -> float | None:
    """Return the process's peak resident set size in MiB, or None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def cpu_seconds(roots: Iterable[int]) -> float:
    """Return the CPU seconds, user and system, used by `roots` and their children.

    Only processes that are alive count. Linux only.
    """
    children = _children_by_parent()
    pids = [p for root in roots for p in (root, *children.get(root, []))]
    ticks = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[-1].split()
        # utime and stime are fields 14 and 15 of stat(5); `fields` starts at 3.
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text(encoding="ascii", errors="replace")
        except OSError:
            continue
        # The command name in brackets may hold spaces; the fields after it don't.
        fields = stat.rsplit(")", 1)[-1].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def _free_ports(count: int) -> list[int]:
    with ExitStack() as stack:
        probes = [stack.enter_context(socket.socket()) for _ in range(count)]
        for probe in probes:
            probe.bind((runner.HOST, 0))
        return [int(probe.getsockname()[1]) for probe in probes]
