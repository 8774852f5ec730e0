"""The retention schedule (the centre's file plan) as validated data."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

from services.archive.domain.deadlines import COUNTING_RULES, Deadline, compute_deadline

RECORD_CLASSES = ("personal_file", "journal")
_ITEM_FIELDS = ("record_class", "period_years", "counting_rule", "mark", "basis")


class ScheduleError(ValueError):
    """The retention schedule is missing, malformed or breaks a rule."""


@dataclass(frozen=True)
class ScheduleItem:
    """One record class of the file plan: its minimum period and legal basis."""

    record_class: str
    period_years: int
    counting_rule: str
    mark: str
    basis: str

    def deadline(self, closed_on: date, literal_start: date | None = None) -> Deadline:
        """Compute the retention dates of a record of this class."""
        return compute_deadline(
            closed_on=closed_on,
            period_years=self.period_years,
            counting_rule=self.counting_rule,
            literal_start=literal_start,
        )

    def as_dict(self) -> dict[str, Any]:
        """Return the item as the public schedule lists it."""
        return {name: getattr(self, name) for name in _ITEM_FIELDS}


@dataclass(frozen=True)
class RetentionSchedule:
    """Every record class the archive tracks, with a fingerprint of the content."""

    items: tuple[ScheduleItem, ...]

    def item(self, record_class: str) -> ScheduleItem:
        """Return the item of `record_class` or raise `ScheduleError`."""
        for item in self.items:
            if item.record_class == record_class:
                return item
        raise ScheduleError(f"the schedule has no record class {record_class!r}")

    @property
    def fingerprint(self) -> str:
        """SHA-256 of the items, so that a changed schedule can be detected."""
        canonical = json.dumps(
            [item.as_dict() for item in self.items],
            ensure_ascii=False,
            sort_keys=True,
            separators=(",", ":"),
        )
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


DEFAULT_SCHEDULE_PATH = Path(__file__).resolve().parent.parent / "schedule.json"


def load_schedule(path: str | Path | None = None) -> RetentionSchedule:
    """Read and validate the schedule file (default: the packaged one)."""
    source = Path(path) if path is not None else DEFAULT_SCHEDULE_PATH
    try:
        text = source.read_text(encoding="utf-8-sig")
    except OSError as error:
        raise ScheduleError(f"cannot read the schedule {source}: {error}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise ScheduleError(f"schedule {source} is not valid JSON: {error}") from None
    try:
        return parse_schedule(data)
    except ScheduleError as error:
        raise ScheduleError(f"invalid schedule {source}: {error}") from None


def parse_schedule(data: Any) -> RetentionSchedule:
    """Validate decoded schedule JSON and build the schedule from it."""
    if not isinstance(data, Mapping) or not isinstance(data.get("items"), list):
        raise ScheduleError('expected an object with a list "items"')
    items = tuple(_parse_item(index, raw) for index, raw in enumerate(data["items"]))

    seen = [item.record_class for item in items]
    for record_class in RECORD_CLASSES:
        if seen.count(record_class) != 1:
            raise ScheduleError(
                f"record class {record_class!r} must appear exactly once, "
                f"found {seen.count(record_class)} times"
            )
    return RetentionSchedule(items=items)


def _parse_item(index: int, raw: Any) -> ScheduleItem:
    where = f"items[{index}]"
    if not isinstance(raw, Mapping):
        raise ScheduleError(f"{where} must be an object")
    unknown = sorted(set(raw) - set(_ITEM_FIELDS))
    if unknown:
        raise ScheduleError(f"{where} has unknown fields: {', '.join(unknown)}")
    missing = [name for name in _ITEM_FIELDS if name not in raw]
    if missing:
        raise ScheduleError(f"{where} is missing fields: {', '.join(missing)}")

    record_class = raw["record_class"]
    if record_class not in RECORD_CLASSES:
        raise ScheduleError(
            f"{where}.record_class {record_class!r} is unknown; "
            f"expected one of {', '.join(RECORD_CLASSES)}"
        )
    period = raw["period_years"]
    if isinstance(period, bool) or not isinstance(period, int) or period < 1:
        raise ScheduleError(
            f"{where}.period_years must be a whole number of years, at least 1; "
            f"got {period!r}"
        )
    rule = raw["counting_rule"]
    if rule not in COUNTING_RULES:
        raise ScheduleError(
            f"{where}.counting_rule {rule!r} is unknown; "
            f"expected one of {', '.join(sorted(COUNTING_RULES))}"
        )
    for name in ("mark", "basis"):
        if not isinstance(raw[name], str) or not raw[name].strip():
            raise ScheduleError(f"{where}.{name} must be a non-empty string")
    return ScheduleItem(
        record_class=record_class,
        period_years=period,
        counting_rule=rule,
        mark=raw["mark"],
        basis=raw["basis"],
    )
