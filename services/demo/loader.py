"""Send the demo plan to the records service over HTTP, the way clients do."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import date
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)
from tqdm import tqdm

from services.demo.model import Command, Plan, Ref

logger = logging.getLogger(__name__)

CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
DEFAULT_WORKERS = 4
# Statuses after which the same request is sent again, because the service was
# busy or briefly unavailable. Every other error stops the load.
RETRYABLE_STATUSES = frozenset({429, 502, 503, 504})
RETRY_ATTEMPTS = 6


class DemoLoadError(Exception):
    """The records service rejected a command of the demo plan."""

    def __init__(self, step: int, command: Command, detail: str) -> None:
        super().__init__(
            f"demo step {step} ({command.describe()}: POST {command.path}) failed: "
            f"{detail}"
        )
        self.step = step
        self.command = command
        self.detail = detail


class _TransientError(Exception):
    """A request that may succeed when repeated (a busy or restarting service)."""


@dataclass(frozen=True)
class DemoSummary:
    """Summary of a demo load: commands per kind, the centre's time span, duration."""

    counts: dict[str, int]
    first_day: date
    last_day: date
    elapsed_seconds: float
    last_position: int

    @property
    def commands(self) -> int:
        return sum(self.counts.values())

    def __str__(self) -> str:
        lines = [
            f"Demo centre loaded: {self.commands} commands in "
            f"{self.elapsed_seconds:.1f} s",
            f"  time span: {self.first_day.isoformat()} .. {self.last_day.isoformat()}",
        ]
        width = max(len(kind) for kind in self.counts)
        for kind, count in self.counts.items():
            lines.append(f"  {kind:<{width}}  {count:>6}")
        lines.append(f"  last records position: {self.last_position}")
        return "\n".join(lines)


class PlanLoader:
    """Sends commands in plan order; lanes of one batch run on worker threads."""

    def __init__(
        self,
        records_url: str,
        tokens: dict[str, str],
        *,
        workers: int = DEFAULT_WORKERS,
    ) -> None:
        self.base_url = records_url.rstrip("/")
        self.tokens = dict(tokens)
        self.workers = max(1, workers)
        self.ids: dict[str, str] = {}
        self._ids_lock = threading.Lock()
        self._local = threading.local()
        self._last_position = 0
        self._failed = threading.Event()

    def run(self, plan: Plan, *, progress: bool = True) -> DemoSummary:
        """Send every command of `plan`; raise DemoLoadError on the first rejection."""
        missing = sorted({c.role for c in plan} - set(self.tokens))
        if missing:
            raise ValueError(f"no token given for the roles: {', '.join(missing)}")
        started = time.monotonic()
        steps = {id(command): step for step, command in enumerate(plan, start=1)}
        with (
            tqdm(total=len(plan), unit="cmd", desc="demo", disable=not progress) as bar,
            ThreadPoolExecutor(self.workers, thread_name_prefix="demo") as pool,
        ):
            for batch in plan.batches():
                self._run_batch(batch, steps, pool, bar.update)
        first_day, last_day = plan.span()
        return DemoSummary(
            counts=dict(sorted(Counter(c.kind for c in plan).items())),
            first_day=first_day,
            last_day=last_day,
            elapsed_seconds=time.monotonic() - started,
            last_position=self._last_position,
        )

    def _run_batch(
        self,
        batch: list[Command],
        steps: dict[int, int],
        pool: ThreadPoolExecutor,
        advance: Callable[[int], object],
    ) -> None:
        lanes: dict[str, list[Command]] = {}
        for command in batch:
            lanes.setdefault(command.lane, []).append(command)
        if len(lanes) == 1 or self.workers == 1:
            self._run_lane(batch, steps, advance)
            return
        futures = [
            pool.submit(self._run_lane, lane, steps, advance) for lane in lanes.values()
        ]
        wait(futures, return_when=FIRST_EXCEPTION)
        for future in futures:
            future.cancel()
        for future in futures:
            if not future.cancelled():
                future.result()  # re-raises the first failure in this thread

    def _run_lane(
        self,
        commands: Iterable[Command],
        steps: dict[int, int],
        advance: Callable[[int], object],
    ) -> None:
        for command in commands:
            if self._failed.is_set():
                return  # another lane failed: send nothing more
            try:
                self._send(steps[id(command)], command)
            except DemoLoadError:
                self._failed.set()
                raise
            advance(1)

    def _send(self, step: int, command: Command) -> None:
        url = self.base_url + command.path.format(
            **{
                name: self._resolve(ref, step, command)
                for name, ref in command.params.items()
            }
        )
        body = self._resolved(command.body, step, command)
        headers = {"Authorization": f"Bearer {self.tokens[command.role]}"}
        try:
            response = self._post_with_retries(url, body, headers)
        except (_TransientError, requests.RequestException) as error:
            raise DemoLoadError(step, command, str(error)) from error
        if response.status_code not in (200, 201):
            raise DemoLoadError(step, command, _describe_rejection(response))
        answer = response.json()
        self._remember(command, answer, step)

    def _post_with_retries(
        self, url: str, body: dict[str, Any], headers: dict[str, str]
    ) -> requests.Response:
        # NOTE: a POST whose connection broke after the service committed it is
        # sent again and then rejected (409 or a duplicate), which stops the load.
        retrying = Retrying(
            retry=retry_if_exception_type((_TransientError, requests.ConnectionError)),
            stop=stop_after_attempt(RETRY_ATTEMPTS),
            wait=wait_exponential(multiplier=0.2, max=5),
            reraise=True,
        )
        for attempt in retrying:
            with attempt:
                response = self._session().post(
                    url,
                    json=body,
                    headers=headers,
                    timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                )
                if response.status_code in RETRYABLE_STATUSES:
                    logger.info(
                        "records service returned %s; retrying", response.status_code
                    )
                    raise _TransientError(_describe_rejection(response))
                return response
        raise AssertionError("unreachable: tenacity re-raises the last error")

    def _remember(self, command: Command, answer: Any, step: int) -> None:
        if not isinstance(answer, dict):
            raise DemoLoadError(
                step, command, f"response is not a JSON object: {answer!r}"
            )
        position = answer.get("position")
        if isinstance(position, int):
            with self._ids_lock:
                self._last_position = max(self._last_position, position)
        if command.creates is None:
            return
        issued = answer.get("id")
        if not isinstance(issued, str):
            raise DemoLoadError(step, command, f"response carries no id: {answer!r}")
        with self._ids_lock:
            self.ids[command.creates] = issued

    def _resolve(self, ref: Ref, step: int, command: Command) -> str:
        with self._ids_lock:
            issued = self.ids.get(ref.key)
        if issued is None:
            raise DemoLoadError(step, command, f"{ref.key} was not created before")
        return issued

    def _resolved(self, value: Any, step: int, command: Command) -> Any:
        if isinstance(value, Ref):
            return self._resolve(value, step, command)
        if isinstance(value, dict):
            return {k: self._resolved(v, step, command) for k, v in value.items()}
        if isinstance(value, list):
            return [self._resolved(item, step, command) for item in value]
        return value

    def _session(self) -> requests.Session:
        # One keep-alive session per worker thread: a Session is not thread-safe.
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            adapter = HTTPAdapter(pool_connections=1, pool_maxsize=1)
            session.mount("http://", adapter)
            session.mount("https://", adapter)
            self._local.session = session
        return session


def _describe_rejection(response: requests.Response) -> str:
    """Name the status and, when there is one, the problem+json body."""
    text = response.text.strip()[:2000] or "(empty body)"
    return f"HTTP {response.status_code} {response.reason}: {text}"
