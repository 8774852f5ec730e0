"""`pupil-records run`: start, watch and stop every process of both services."""

from __future__ import annotations

import ctypes
import dataclasses
import errno
import json
import logging
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import requests

from shared.auth import ROLES, TokenStore
from shared.config import Settings
from shared.locks import ProcessLock

log = logging.getLogger(__name__)

HOST = "127.0.0.1"
RUN_LOCK_FILE_NAME = "run.lock"
SERVICES_LOCK_FILE_NAME = "services.lock"
LOCAL_TOKENS_FILE_NAME = "local-tokens.json"
LOGS_DIR_NAME = "logs"
METRICS_DIR_NAME = "metrics"

STARTUP_TIMEOUT_SECONDS = 90.0
# gunicorn gives its workers this long after SIGTERM. The supervisor waits a
# little longer for the master, then kills the whole process group.
GUNICORN_GRACEFUL_TIMEOUT_SECONDS = 3
STOP_TIMEOUT_SECONDS = GUNICORN_GRACEFUL_TIMEOUT_SECONDS + 3.0
RESTART_DELAY_MAX_SECONDS = 30.0
# A child that ran this long before it exited starts again at the shortest
# delay, because its exit is a new failure and not part of a crash loop.
STABLE_UPTIME_SECONDS = 60.0
POLL_INTERVAL_SECONDS = 0.2
PROBE_TIMEOUT_SECONDS = 2.0
# How long to wait for the rest of an ended child's output before reading it.
OUTPUT_DRAIN_SECONDS = 2.0
# Error lines of a failed child that a start-up error repeats.
FAILURE_LINES = 3
# The data dir contains decrypted names in the read models, keys and tokens,
# so what `run` and its children create there is for the owner only.
PRIVATE_UMASK = 0o077
PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
# Files of the data dir that `run` makes private when an earlier version or
# another tool left them open to other users.
PRIVATE_FILE_PATTERNS = ("*.sqlite", "*.sqlite-wal", "*.sqlite-shm", "*.json", "*.key")


class RunnerError(Exception):
    """The services could not be started or supervised."""


@dataclass(frozen=True)
class ProcessSpec:
    """How to start one child process."""

    name: str
    argv: tuple[str, ...]
    env: Mapping[str, str]


@dataclass(frozen=True)
class ServiceUrls:
    """The base URLs of the two web services started by `run`."""

    records: str
    archive: str

    def probes(self) -> list[str]:
        """Return the health and readiness URLs that must return 200."""
        return [
            f"{base}/{path}"
            for base in (self.records, self.archive)
            for path in ("healthz", "readyz")
        ]


def run_lock_path(settings: Settings) -> Path:
    """Return the lock file that one `run` holds exclusively."""
    return settings.data_dir / RUN_LOCK_FILE_NAME


def services_lock_path(settings: Settings) -> Path:
    """Return the lock file that the services share and a rebuild holds alone."""
    return settings.data_dir / SERVICES_LOCK_FILE_NAME


def local_tokens_path(settings: Settings) -> Path:
    """Return the file with one plain token per role for local use (mode 0600)."""
    return settings.data_dir / LOCAL_TOKENS_FILE_NAME


def metrics_dir(settings: Settings, service: str) -> Path:
    """Return the folder where the gunicorn workers of `service` keep metrics."""
    return settings.data_dir / METRICS_DIR_NAME / service


def logs_dir(settings: Settings) -> Path:
    """Return the folder where `run` writes one log file per process."""
    return logs_dir_of(settings.data_dir)


def logs_dir_of(data_dir: Path) -> Path:
    """Return the folder of the process logs in `data_dir`."""
    return data_dir / LOGS_DIR_NAME


@contextmanager
def services_running(settings: Settings) -> Iterator[None]:
    """Hold the data dir's locks for the lifetime of `run`.

    Raises `shared.locks.LockHeldError` when another `run` uses the data dir or
    a rebuild is in progress. The services lock is taken shared, so that
    service processes may hold it too while a rebuild needs it alone.
    """
    owner = "pupil-records run"
    with ProcessLock(run_lock_path(settings), owner=owner):
        with ProcessLock(services_lock_path(settings), owner=owner, shared=True):
            yield


@contextmanager
def services_stopped(settings: Settings, owner: str) -> Iterator[None]:
    """Hold the services lock alone; raise `LockHeldError` while they run."""
    with ProcessLock(services_lock_path(settings), owner=owner):
        yield


def cli_command(*args: str) -> tuple[str, ...]:
    """Return the argv that runs `pupil-records ARGS` with this interpreter."""
    return (sys.executable, "-m", "services.cli", *args)


def gunicorn_command(app: str) -> tuple[str, ...]:
    """Return the argv that serves the WSGI `app` with the project's settings."""
    return (
        sys.executable,
        "-m",
        "gunicorn",
        "-c",
        "python:services.gunicorn_conf",
        app,
    )


# ---------------------------------------------------------------- local tokens


def ensure_local_tokens(settings: Settings) -> dict[str, str]:
    """Return one token per role, re-using saved tokens that are still valid.

    A role gets a new token only when its saved token is missing or was
    revoked. The plain tokens are saved in the data dir with mode 0600.
    """
    store = TokenStore(settings.tokens_file)
    path = local_tokens_path(settings)
    saved = _read_local_tokens(path)
    tokens: dict[str, str] = {}
    for role in ROLES:
        token = saved.get(role)
        if token is None or not _token_is_valid(store, token, role):
            token = store.issue(role, _local_holder_name(role))
            log.info("issued a local %s token", role)
        tokens[role] = token
    if tokens != saved:
        _write_private_json(path, tokens)
    return tokens


def _local_holder_name(role: str) -> str:
    if role == "subscriber":
        return "Archive follower (pupil-records run)"
    return f"Local {role} (pupil-records run)"


def _token_is_valid(store: TokenStore, token: str, role: str) -> bool:
    principal = store.authenticate(token)
    return principal is not None and principal.role == role


def _read_local_tokens(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        log.warning("ignoring unreadable local token file %s: %s", path, error)
        return {}
    if not isinstance(data, dict):
        log.warning("ignoring local token file %s: not a JSON object", path)
        return {}
    return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, str)}


def _write_private_json(path: Path, data: Mapping[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2, sort_keys=True)
            stream.write("\n")
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------ processes


def process_specs(
    settings: Settings, records_port: int, archive_port: int
) -> list[ProcessSpec]:
    """Return the four processes of both services, configured through env."""
    base = {**os.environ, **settings.with_env(), "PYTHONUNBUFFERED": "1"}
    base["PUPIL_RECORDS_GRACEFUL_TIMEOUT"] = str(GUNICORN_GRACEFUL_TIMEOUT_SECONDS)

    def spec(name: str, argv: tuple[str, ...], **extra: str) -> ProcessSpec:
        return ProcessSpec(
            name, argv, {**base, "PUPIL_RECORDS_PROC_NAME": name, **extra}
        )

    return [
        spec(
            "records-web",
            gunicorn_command("services.records.web:create_app()"),
            PUPIL_RECORDS_BIND=f"{HOST}:{records_port}",
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir(settings, "records-web")),
        ),
        spec("records-projector", cli_command("records", "project")),
        spec(
            "archive-web",
            gunicorn_command("services.archive.web:create_app()"),
            PUPIL_RECORDS_BIND=f"{HOST}:{archive_port}",
            PROMETHEUS_MULTIPROC_DIR=str(metrics_dir(settings, "archive-web")),
        ),
        spec("archive-follower", cli_command("archive", "follow")),
    ]


def check_port_free(port: int) -> None:
    """Raise RunnerError when a server could not listen on HOST:port now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                problem = "is already in use"
            else:
                problem = f"cannot be used ({error.strerror})"
            raise RunnerError(
                f"port {port} on {HOST} {problem}; "
                "choose another with --records-port or --archive-port"
            ) from None


# A line of gunicorn's access log in the format of services/gunicorn_conf.py
# for a request that succeeded: address, [time], "METHOD route", status < 400.
_SUCCESS_ACCESS_LINE = re.compile(r'^\S+ \[[^\]]+\] "[A-Z]+ [^"]*" [123]\d\d ')


class OutputSink:
    """Writes child output to the terminal, each line prefixed with its process.

    While `quiet_access_log` is set, access-log lines of successful requests
    are left out, for example during the demo data load, which sends
    thousands of them. The log files still get every line.
    """

    def __init__(self, stream: IO[str], width: int) -> None:
        self._stream = stream
        self._width = width
        self._lock = threading.Lock()
        self.quiet_access_log = threading.Event()

    def write(self, name: str, line: str) -> None:
        """Write one line of the process `name` to the terminal."""
        if self.quiet_access_log.is_set() and _SUCCESS_ACCESS_LINE.match(line):
            return
        self.write_text(f"{name:<{self._width}} | {line}\n")

    def write_text(self, text: str) -> None:
        """Write `text` as is, never in the middle of another process's line."""
        with self._lock:
            try:
                self._stream.write(text)
                self._stream.flush()
            except (OSError, ValueError):
                pass  # a closed terminal must not stop the services


@dataclass
class Child:
    """One supervised child process and its restart state."""

    spec: ProcessSpec
    log_file: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float | None = None
    reader: threading.Thread | None = field(default=None, repr=False)
    # Size of the log file when the process last started, where its output begins.
    log_offset: int = 0

    @property
    def name(self) -> str:
        return self.spec.name

    def start(self, sink: OutputSink) -> None:
        """Start the process and copy its output to the sink and its log file."""
        try:
            self.log_offset = self.log_file.stat().st_size
        except FileNotFoundError:
            self.log_offset = 0
        self.process = subprocess.Popen(
            self.spec.argv,
            env=dict(self.spec.env),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
            umask=PRIVATE_UMASK,
        )
        self.started_at = time.monotonic()
        self.restart_at = None
        self.reader = threading.Thread(
            target=_copy_output,
            args=(self.process, self.name, self.log_file, sink),
            name=f"output-{self.name}",
            daemon=True,
        )
        self.reader.start()
        log.info("started %s (pid %d)", self.name, self.process.pid)

    def exit_code(self) -> int | None:
        """Return the exit code once the process has ended, else None."""
        return None if self.process is None else self.process.poll()

    @property
    def running(self) -> bool:
        """Whether the process was started and has not ended."""
        return self.process is not None and self.process.poll() is None

    def failure_lines(self, fallback: bool = True) -> list[str]:
        """Return the error lines of the process's latest output, for a message.

        Waits briefly for the output copier, because the last lines may still
        be in the pipe when the process has ended.
        """
        if self.reader is not None:
            self.reader.join(timeout=OUTPUT_DRAIN_SECONDS)
        return error_lines(self.log_file, self.log_offset, fallback=fallback)

    def schedule_restart(self, now: float) -> float:
        """Count a failure and return the delay before the next start."""
        if now - self.started_at >= STABLE_UPTIME_SECONDS:
            self.failures = 0
        self.failures += 1
        delay = min(RESTART_DELAY_MAX_SECONDS, 2.0 ** (self.failures - 1))
        self.restart_at = now + delay
        self.process = None
        return delay

    def terminate(self) -> None:
        """Ask the process to stop (SIGTERM to the process, not its group)."""
        if self.running and self.process is not None:
            _signal_quietly(self.process.pid, signal.SIGTERM)

    def kill_group(self) -> None:
        """Kill the process and everything left in its process group."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            log.error("%s (pid %d) survived SIGKILL", self.name, self.process.pid)


# Lines that gunicorn writes around every failed boot. They never name the cause.
_BOILERPLATE = re.compile(
    r"Exception in worker process|Worker \(pid:\d+\) (exited|was sent)|"
    r"Shutting down: Master|Reason: Worker failed to boot|Worker exiting|HaltServer"
)
# The last line of a Python traceback, e.g. "pkg.module.SomeError: message".
_EXCEPTION_LINE = re.compile(r"^([A-Za-z_][\w.]*)?(Error|Exception|Exit)\b(: .*)?$")
# A log record at level ERROR or CRITICAL, in the format of gunicorn or of the CLI.
_ERROR_RECORD = re.compile(r"\[(ERROR|CRITICAL)\]| (ERROR|CRITICAL) ")


def error_lines(
    log_file: Path,
    offset: int = 0,
    limit: int = FAILURE_LINES,
    *,
    fallback: bool = True,
) -> list[str]:
    """Return the last distinct error lines of `log_file` from byte `offset` on.

    Error lines are click's "Error: ..." messages, the last lines of
    tracebacks and log records at level ERROR or CRITICAL, without gunicorn's
    boot-failure boilerplate. Without any, returns the last non-blank lines,
    or nothing when `fallback` is false.
    """
    try:
        with open(log_file, "rb") as stream:
            stream.seek(offset)
            text = stream.read().decode("utf-8", errors="replace")
    except OSError:
        return []
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    found: list[str] = []
    for line in lines:
        if _BOILERPLATE.search(line):
            continue
        if (
            line.startswith("Error: ")
            or _EXCEPTION_LINE.match(line)
            or _ERROR_RECORD.search(line)
        ):
            if line in found:
                found.remove(line)
            found.append(line)
    if found:
        return found[-limit:]
    return lines[-limit:] if fallback else []


def describe_exit(code: int) -> str:
    """Describe an exit code of `subprocess`, negative for a signal."""
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


class Supervisor:
    """Starts child processes, restarts those that die and stops them all."""

    def __init__(self, specs: Sequence[ProcessSpec], logs: Path, sink: OutputSink):
        logs.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
        self.children = [Child(spec, logs / f"{spec.name}.log") for spec in specs]
        self._sink = sink

    def start_all(self) -> None:
        """Start every child."""
        for child in self.children:
            child.start(self._sink)

    def check_started(self) -> None:
        """Raise RunnerError if a child has ended during start-up.

        The message repeats the error lines of every child that has ended,
        so that the cause shows without opening the logs.
        """
        ended = [
            (child, code)
            for child in self.children
            if (code := child.exit_code()) is not None
        ]
        if not ended:
            return
        parts = []
        for child, code in ended:
            parts.append(f"{child.name} {describe_exit(code)} during start-up:")
            parts.extend(f"  {line}" for line in child.failure_lines())
            parts.append(f"  (its whole output is in {child.log_file})")
        raise RunnerError("\n".join(parts))

    def tend(self, now: float | None = None) -> None:
        """Restart children that ended, each after its backoff delay."""
        now = time.monotonic() if now is None else now
        for child in self.children:
            if child.restart_at is not None:
                if now >= child.restart_at:
                    log.info("restarting %s", child.name)
                    child.start(self._sink)
                continue
            code = child.exit_code()
            if code is not None:
                # gunicorn workers outlive a killed master and keep its port.
                child.kill_group()
                errors = child.failure_lines(fallback=False)
                delay = child.schedule_restart(now)
                log.warning(
                    "%s %s; restarting in %.0f s (see %s)%s",
                    child.name,
                    describe_exit(code),
                    delay,
                    child.log_file,
                    f"; last error: {errors[-1]}" if errors else "",
                )

    def stop_all(self, force: threading.Event | None = None) -> None:
        """Send SIGTERM to every child, wait, then kill what is left."""
        for child in self.children:
            child.restart_at = None
            child.terminate()

        deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
        while time.monotonic() < deadline and not (force and force.is_set()):
            if not any(child.running for child in self.children):
                break
            time.sleep(0.05)

        for child in self.children:
            if child.running:
                log.warning("%s did not stop in time; killing it", child.name)
            # Also kills gunicorn workers left behind by a master that exited.
            child.kill_group()
        for child in self.children:
            if child.reader is not None:
                child.reader.join(timeout=1.0)


def _copy_output(
    process: subprocess.Popen[bytes], name: str, log_file: Path, sink: OutputSink
) -> None:
    assert process.stdout is not None
    with open_private_log(log_file) as file:
        for raw in iter(process.stdout.readline, b""):
            line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
            sink.write(name, line)
            file.write(line + "\n")
    process.stdout.close()


def open_private_log(path: Path) -> IO[str]:
    """Open `path` for appending text, creating it with mode 0600."""
    descriptor = os.open(
        path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, PRIVATE_FILE_MODE
    )
    return os.fdopen(descriptor, "a", encoding="utf-8", buffering=1)


def make_data_dir_private(data_dir: Path) -> None:
    """Create `data_dir` with mode 0700 and close what others can open in it.

    A data dir or file from an earlier run with a looser mode is tightened
    and logged. Only the data dir itself and its files are changed, never
    its parents.
    """
    data_dir.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    _restrict_mode(data_dir, PRIVATE_DIR_MODE)
    for folder in (logs_dir_of(data_dir), data_dir / METRICS_DIR_NAME):
        if folder.is_dir():
            _restrict_mode(folder, PRIVATE_DIR_MODE)
    for pattern in PRIVATE_FILE_PATTERNS:
        for path in data_dir.glob(pattern):
            if path.is_file():
                _restrict_mode(path, PRIVATE_FILE_MODE)
    for path in logs_dir_of(data_dir).glob("*.log"):
        _restrict_mode(path, PRIVATE_FILE_MODE)


def _restrict_mode(path: Path, mode: int) -> None:
    try:
        current = stat.S_IMODE(path.stat().st_mode)
        if current & ~mode == 0:
            return
        path.chmod(current & mode)
    except OSError as error:
        log.warning("cannot restrict the mode of %s: %s", path, error.strerror)
        return
    log.info("restricted %s from mode %o to %o", path, current, current & mode)


@contextmanager
def private_umask() -> Iterator[None]:
    """Create files and folders for the owner only while the block runs."""
    previous = os.umask(PRIVATE_UMASK)
    try:
        yield
    finally:
        os.umask(previous)


def _signal_quietly(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


_PR_SET_PDEATHSIG = 1
_libc: Any = None


def _load_libc() -> Any:
    global _libc
    if _libc is None and sys.platform.startswith("linux"):
        _libc = ctypes.CDLL(None, use_errno=True)
    return _libc


def _die_with_parent() -> None:
    # Runs in the child between fork and exec. If the supervisor is killed
    # without a chance to stop its children, Linux sends them SIGTERM.
    if _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


# ------------------------------------------------------------------------ run


@contextmanager
def _stop_signals(stop: threading.Event, force: threading.Event) -> Iterator[None]:
    """Set `stop` on SIGINT, SIGTERM or SIGHUP, and `force` on a second one."""

    def handle(signum: int, _frame: Any) -> None:
        if stop.is_set():
            force.set()
        else:
            log.info("received %s; stopping", signal.Signals(signum).name)
            stop.set()

    handled = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, handle) for signum in handled}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def wait_until_ready(
    supervisor: Supervisor,
    urls: Sequence[str],
    stop: threading.Event,
    timeout: float = STARTUP_TIMEOUT_SECONDS,
) -> bool:
    """Wait until every URL returns 200; return False if `stop` was set first.

    Raises RunnerError when a child ends or the timeout passes first.
    """
    pending = list(urls)
    deadline = time.monotonic() + timeout
    with requests.Session() as session:
        while pending:
            if stop.is_set():
                return False
            supervisor.check_started()
            pending = [url for url in pending if not _answers_ok(session, url)]
            if not pending:
                break
            if time.monotonic() > deadline:
                raise RunnerError(
                    f"the services were not ready within {timeout:.0f} s: "
                    f"{', '.join(pending)} did not answer 200; "
                    f"see the logs in {supervisor.children[0].log_file.parent}"
                )
            stop.wait(0.3)
    return True


def _answers_ok(session: requests.Session, url: str) -> bool:
    try:
        response = session.get(url, timeout=PROBE_TIMEOUT_SECONDS)
    except requests.RequestException:
        return False
    return response.status_code == 200


def run(
    settings: Settings,
    records_port: int,
    archive_port: int,
    demo: bool = False,
    out: IO[str] | None = None,
) -> None:
    """Start both services, print their URLs and supervise until a stop signal.

    Raises RunnerError when they cannot start, and `shared.locks.LockHeldError`
    when another `run` or a rebuild has locked the data dir.
    """
    out = out if out is not None else sys.stdout
    if records_port == archive_port:
        raise RunnerError("--records-port and --archive-port must differ")

    with private_umask():
        make_data_dir_private(settings.data_dir)
        _run_locked(settings, records_port, archive_port, demo, out)


def _run_locked(
    settings: Settings, records_port: int, archive_port: int, demo: bool, out: IO[str]
) -> None:
    with services_running(settings):
        check_port_free(records_port)
        check_port_free(archive_port)
        tokens = ensure_local_tokens(settings)
        urls = ServiceUrls(
            f"http://{HOST}:{records_port}", f"http://{HOST}:{archive_port}"
        )
        settings = dataclasses.replace(
            settings, records_url=urls.records, archive_feed_token=tokens["subscriber"]
        )
        specs = process_specs(settings, records_port, archive_port)
        _supervise(settings, specs, urls, tokens, demo, out)


def _supervise(
    settings: Settings,
    specs: Sequence[ProcessSpec],
    urls: ServiceUrls,
    tokens: Mapping[str, str],
    demo: bool,
    out: IO[str],
) -> None:
    stop, force = threading.Event(), threading.Event()
    sink = OutputSink(out, max(len(spec.name) for spec in specs))
    supervisor = Supervisor(specs, logs_dir(settings), sink)
    _load_libc()

    with _stop_signals(stop, force), _log_to_file(logs_dir(settings) / "run.log"):
        try:
            supervisor.start_all()
            if not wait_until_ready(supervisor, urls.probes(), stop):
                return
            _print_banner(sink, urls, local_tokens_path(settings))
            if demo:
                _start_demo_loader(urls.records, tokens, stop, sink)
            while not stop.is_set():
                supervisor.tend()
                stop.wait(POLL_INTERVAL_SECONDS)
        finally:
            log.info("stopping every process")
            supervisor.stop_all(force)
            log.info("stopped")


@contextmanager
def _log_to_file(path: Path) -> Iterator[None]:
    """Copy the supervisor's own log records to `path` while the block runs."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    try:
        yield
    finally:
        log.removeHandler(handler)
        handler.close()


def _print_banner(sink: OutputSink, urls: ServiceUrls, tokens_file: Path) -> None:
    lines = [
        "",
        "pupil-records is running:",
        f"  records service  {urls.records}",
        f"  archive service  {urls.archive}",
        f"  local tokens     {tokens_file}",
        "Press Ctrl-C to stop.",
        "",
    ]
    sink.write_text("\n".join(lines) + "\n")


# ----------------------------------------------------------------------- demo


def records_store_is_empty(records_url: str, tokens: Mapping[str, str]) -> bool:
    """Tell whether the records service has no pupils and no programmes."""
    checks = [
        ("/api/v1/pupils?limit=1", tokens["registrar"]),
        ("/api/v1/programmes", tokens["admin"]),
    ]
    for path, token in checks:
        response = requests.get(
            records_url + path,
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
        response.raise_for_status()
        if response.json().get("items"):
            return False
    return True


def _start_demo_loader(
    records_url: str,
    tokens: Mapping[str, str],
    stop: threading.Event,
    sink: OutputSink,
) -> threading.Thread:
    thread = threading.Thread(
        target=_load_demo,
        args=(records_url, dict(tokens), stop, sink),
        name="demo-loader",
        daemon=True,
    )
    thread.start()
    return thread


def _load_demo(
    records_url: str,
    tokens: dict[str, str],
    stop: threading.Event,
    sink: OutputSink | None = None,
) -> None:
    if sink is not None:
        sink.quiet_access_log.set()
    try:
        _load_demo_if_empty(records_url, tokens)
    except Exception as error:  # the services keep running without demo data
        if stop.is_set():
            log.info("demo data load interrupted by the stop")
        else:
            log.error("demo data load failed: %s", _one_line(error))
    finally:
        if sink is not None:
            sink.quiet_access_log.clear()


def _load_demo_if_empty(records_url: str, tokens: dict[str, str]) -> None:
    if not records_store_is_empty(records_url, tokens):
        log.info("demo data not loaded because the records store is not empty")
        return
    try:
        load = _demo_loader()
    except ImportError as error:
        log.error("demo data not loaded: the demo loader is missing (%s)", error)
        return

    log.info(
        "loading the demo data through %s; the request lines of successful "
        "requests go only to the log files meanwhile",
        records_url,
    )
    # With progress the loader prints the summary itself.
    summary = load(records_url, tokens, progress=True)
    log.info(
        "demo data loaded: %d commands, last records position %d",
        summary.commands,
        summary.last_position,
    )


def _demo_loader() -> Callable[..., Any]:
    from services.demo import load

    loader: Callable[..., Any] = load
    return loader


def _one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
