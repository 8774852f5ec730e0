"""The demo plan's data: API commands with symbolic ids, in the order to send them."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any


@dataclass(frozen=True)
class Ref:
    """A symbolic id in the plan, replaced by the id the service issued for it."""

    key: str


# Kinds of command, in the order they run within one day of the centre's timeline.
COMMAND_KINDS = (
    "programme",
    "journal",
    "pupil",
    "enrolment",
    "enrolment_cancellation",
    "transfer",
    "session",
    "attestation",
    "expulsion",
    "expulsion_cancellation",
    "closure",
)
RANKS = {kind: rank for rank, kind in enumerate(COMMAND_KINDS)}

ROLES = {
    "programme": "admin",
    "journal": "specialist",
    "pupil": "registrar",
    "enrolment": "registrar",
    "enrolment_cancellation": "registrar",
    "transfer": "registrar",
    "session": "specialist",
    "attestation": "methodist",
    "expulsion": "registrar",
    "expulsion_cancellation": "registrar",
    "closure": "specialist",
}


@dataclass(frozen=True)
class Command:
    """One POST of the plan.

    `path` is a template whose fields name `params`; `body` may hold `Ref` values
    anywhere. `creates` is the symbolic key of the id the response carries, if the
    plan refers to it later. `lane` names the aggregate the command writes: the
    loader runs commands of one lane in plan order and other lanes in parallel
    within a batch (see `Plan.batches`).
    """

    kind: str
    path: str
    body: dict[str, Any]
    day: date
    lane: str
    params: dict[str, Ref] = field(default_factory=dict)
    creates: str | None = None

    @property
    def role(self) -> str:
        return ROLES[self.kind]

    @property
    def batch(self) -> tuple[date, int]:
        return self.day, RANKS[self.kind]

    def describe(self) -> str:
        """Return a short human-readable name of the command for messages."""
        target = ", ".join(f"{name}={ref.key}" for name, ref in self.params.items())
        subject = self.creates or target or self.lane
        return f"{self.kind} {subject} on {self.day.isoformat()}"


@dataclass(frozen=True)
class Plan:
    """The demo centre as an ordered list of commands, built for one `today`."""

    today: date
    seed: int
    scale: float
    commands: tuple[Command, ...]

    def __iter__(self) -> Iterator[Command]:
        return iter(self.commands)

    def __len__(self) -> int:
        return len(self.commands)

    def counts(self) -> Counter[str]:
        """Count the commands of each kind."""
        return Counter(command.kind for command in self.commands)

    def span(self) -> tuple[date, date]:
        """Return the first and the last date of the centre's documents and sessions."""
        # Birth dates are left out: they are not the centre's activity.
        days = [
            day
            for command in self.commands
            for day in carried_dates(command, fields=ACTIVITY_DATE_FIELDS)
        ]
        return min(days), max(days)

    def batches(self) -> Iterator[list[Command]]:
        """Yield runs of consecutive commands whose lanes may run in parallel.

        A run shares a day and a kind, except that sessions of consecutive days
        form one run while no other command comes between them: a session only
        depends on earlier orders and on the earlier sessions of its own journal.
        """
        batch: list[Command] = []
        for command in self.commands:
            if batch and not _same_batch(batch[-1], command):
                yield batch
                batch = []
            batch.append(command)
        if batch:
            yield batch


def _same_batch(previous: Command, command: Command) -> bool:
    if previous.kind == command.kind == "session":
        return True
    return previous.batch == command.batch


ACTIVITY_DATE_FIELDS = frozenset({"date", "effective_date", "closed_on", "opened_on"})
DATE_FIELDS = ACTIVITY_DATE_FIELDS | {"birth_date"}


def carried_dates(
    command: Command, *, fields: frozenset[str] = DATE_FIELDS
) -> list[date]:
    """List the dates in the command's body under any of `fields`, at any depth.

    The bounds of a journal's academic year are left out: they define the year
    rather than record something that happened.
    """
    found: list[date] = []
    _collect_dates(command.body, fields, found)
    return found


def _collect_dates(value: Any, fields: frozenset[str], found: list[date]) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            if key in fields and isinstance(item, str):
                found.append(date.fromisoformat(item))
            elif key != "academic_year":
                _collect_dates(item, fields, found)
    elif isinstance(value, list):
        for item in value:
            _collect_dates(item, fields, found)
