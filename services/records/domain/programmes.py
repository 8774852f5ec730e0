"""Programmes: their attestation criteria and level thresholds."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid5

from eventsourcing.domain import Aggregate

from services.records.domain.base import RecordsAggregate
from services.records.domain.dates import EARLIEST_DOCUMENT_DATE, check_dates
from services.records.domain.errors import InvalidFieldError

LEVELS = ("high", "medium", "low")


def programme_code_key(code: str) -> str:
    return " ".join(code.split()).casefold()


class Programme(RecordsAggregate):
    """An additional general developmental programme the centre runs."""

    TOPIC = "records:Programme"

    code: str
    title: str
    orientation: str
    approved_order: dict[str, Any]
    criteria: list[dict[str, Any]]
    levels: dict[str, str]

    class Event(RecordsAggregate.Event):
        TOPIC = "records:Programme.Event"

    class Created(Event, Aggregate.Created):
        TOPIC = "records:Programme.Created"

    class Approved(Created):
        """The programme was entered with the order that approved it."""

        TOPIC = "records:Programme.Approved"
        code: str
        title: str
        orientation: str
        approved_order: dict[str, Any]
        criteria: list[dict[str, Any]]
        levels: dict[str, str]

        def apply(self, aggregate: Programme) -> None:
            aggregate.code = self.code
            aggregate.title = self.title
            aggregate.orientation = self.orientation
            aggregate.approved_order = self.approved_order
            aggregate.criteria = self.criteria
            aggregate.levels = self.levels

    def __init__(self) -> None:
        pass

    @classmethod
    def approve(
        cls,
        *,
        code: str,
        title: str,
        orientation: str,
        approved_order: dict[str, Any],
        criteria: list[dict[str, Any]],
        high: Decimal,
        medium: Decimal,
    ) -> Programme:
        """Enter a programme; criteria codes are unique, 0 ≤ medium < high ≤ 1."""
        check_dates(
            {"approved_order.date": (approved_order["date"], EARLIEST_DOCUMENT_DATE)}
        )
        codes = [criterion["code"] for criterion in criteria]
        if len(set(codes)) != len(codes):
            raise InvalidFieldError("criteria", "criterion codes must be unique")
        if not Decimal(0) <= medium < high <= Decimal(1):
            raise InvalidFieldError(
                "levels", "thresholds must satisfy 0 <= medium < high <= 1"
            )
        return cls._create(
            cls.Approved,
            code=code,
            title=title,
            orientation=orientation,
            approved_order=approved_order,
            criteria=criteria,
            levels={"high": str(high), "medium": str(medium)},
        )

    @property
    def max_total(self) -> int:
        return sum(int(criterion["max_score"]) for criterion in self.criteria)

    def check_scores(self, scores: dict[str, int]) -> None:
        """Raise unless `scores` holds exactly the criteria, each 0..max_score."""
        errors: dict[str, list[str]] = {}
        maxima = {c["code"]: int(c["max_score"]) for c in self.criteria}
        for code in scores:
            if code not in maxima:
                errors[f"scores.{code}"] = ["not a criterion of this programme"]
        for code, maximum in maxima.items():
            if code not in scores:
                errors[f"scores.{code}"] = ["missing score for this criterion"]
            elif not 0 <= scores[code] <= maximum:
                errors[f"scores.{code}"] = [f"must be between 0 and {maximum}"]
        if errors:
            raise InvalidFieldError.many(errors)

    def grade(self, scores: dict[str, int]) -> tuple[int, str]:
        """Return the total of `scores` and the level it reaches, compared exactly."""
        self.check_scores(scores)
        total = sum(scores.values())
        maximum = Decimal(self.max_total)
        if Decimal(total) >= Decimal(self.levels["high"]) * maximum:
            return total, "high"
        if Decimal(total) >= Decimal(self.levels["medium"]) * maximum:
            return total, "medium"
        return total, "low"


class ProgrammeCode(Aggregate):
    """Claims a programme code, so that a second programme with it fails to save."""

    TOPIC = "records:ProgrammeCode"

    class Event(Aggregate.Event):
        TOPIC = "records:ProgrammeCode.Event"

    class Created(Event, Aggregate.Created):
        TOPIC = "records:ProgrammeCode.Created"

    class Claimed(Created):
        TOPIC = "records:ProgrammeCode.Claimed"
        programme_id: UUID

        def apply(self, aggregate: ProgrammeCode) -> None:
            aggregate.programme_id = self.programme_id

    programme_id: UUID

    def __init__(self) -> None:
        pass

    @staticmethod
    def id_for(code: str) -> UUID:
        return uuid5(NAMESPACE_URL, f"/programme-codes/{programme_code_key(code)}")

    @classmethod
    def claim(cls, code: str, programme_id: UUID) -> ProgrammeCode:
        return cls._create(cls.Claimed, id=cls.id_for(code), programme_id=programme_id)


def order_dict(number: str, signed_on: date) -> dict[str, Any]:
    """Return an order as stored in events: its number and signature date."""
    return {"number": number, "date": signed_on}
