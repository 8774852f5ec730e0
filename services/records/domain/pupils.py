"""The pupil's personal file: enrolments, expulsions, attestations."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import Aggregate

from services.records.domain.base import RecordsAggregate
from services.records.domain.dates import (
    EARLIEST_BIRTH_DATE,
    EARLIEST_DOCUMENT_DATE,
    check_dates,
)
from services.records.domain.errors import (
    NotEnrolledError,
    NotFoundError,
    PersonalDataDestroyedError,
    RuleViolationError,
)
from services.records.domain.names import normalised_full_name
from services.records.domain.programmes import Programme

GROUNDS = ("completed", "parents_request", "transfer", "circumstances", "other")
ATTESTATION_KINDS = ("intermediate", "final")
# What a destruction of a pupil's personal data covers: the data sealed with
# the pupil's key in the records log, and their copies in the read models.
PERSONAL_DATA_CATEGORIES = (
    "full_name",
    "birth_date",
    "attestation_results",
    "attendance",
    "free_text_remarks",
)


@dataclass
class Expulsion:
    id: UUID
    effective_date: date
    ground: str
    ground_detail: str | None
    order: dict[str, Any]
    sequence: int
    cancelled: bool = False


@dataclass
class Enrolment:
    id: UUID
    programme_id: UUID
    effective_date: date
    order: dict[str, Any]
    sequence: int
    status: str = "active"
    last_day: date | None = None
    has_records: bool = False
    by_transfer: bool = False
    expulsions: list[Expulsion] = field(default_factory=list)
    # Journals that recorded the pupil's attendance under this enrolment.
    journal_ids: list[UUID] = field(default_factory=list)

    @property
    def expulsion(self) -> Expulsion | None:
        return self.expulsions[-1] if self.expulsions else None

    def covers(self, day: date) -> bool:
        """Tell whether the pupil was enrolled under this enrolment on `day`."""
        if self.status == "cancelled" or day < self.effective_date:
            return False
        return self.last_day is None or day <= self.last_day


@dataclass
class Attestation:
    id: UUID
    programme_id: UUID
    enrolment_id: UUID
    kind: str
    date: date
    # None once the pupil's personal data were destroyed.
    scores: dict[str, int] | None
    total: int | None
    max_total: int
    level: str | None
    thresholds: dict[str, str]
    protocol: dict[str, Any]
    corrected: bool = False


class Pupil(RecordsAggregate):
    """A pupil's personal file, opened at registration."""

    TOPIC = "records:Pupil"

    # Names and birth date are None once the personal data were destroyed.
    surname: str | None
    name: str | None
    patronymic: str | None
    birth_date: date | None
    opened_on: date
    enrolments: dict[UUID, Enrolment]
    attestations: dict[UUID, Attestation]
    destruction: dict[str, Any] | None

    class Event(RecordsAggregate.Event):
        TOPIC = "records:Pupil.Event"

    class Created(Event, Aggregate.Created):
        TOPIC = "records:Pupil.Created"

    class Registered(Created):
        TOPIC = "records:Pupil.Registered"
        surname: str
        name: str
        patronymic: str | None
        birth_date: date
        opened_on: date

        def apply(self, aggregate: Pupil) -> None:
            aggregate.surname = self.surname
            aggregate.name = self.name
            aggregate.patronymic = self.patronymic
            aggregate.birth_date = self.birth_date
            aggregate.opened_on = self.opened_on
            aggregate.enrolments = {}
            aggregate.attestations = {}
            aggregate.destruction = None

    class Enrolled(Event):
        TOPIC = "records:Pupil.Enrolled"
        enrolment_id: UUID
        programme_id: UUID
        effective_date: date
        order: dict[str, Any]
        reopened_file: bool

        def apply(self, aggregate: Pupil) -> None:
            aggregate.enrolments[self.enrolment_id] = Enrolment(
                id=self.enrolment_id,
                programme_id=self.programme_id,
                effective_date=self.effective_date,
                order=self.order,
                sequence=self.originator_version,
            )

    class EnrolmentCancelled(Event):
        TOPIC = "records:Pupil.EnrolmentCancelled"
        enrolment_id: UUID
        order: dict[str, Any]
        reason: str
        left_centre: bool
        file_closed_on: date | None
        expelled_on: date | None

        def apply(self, aggregate: Pupil) -> None:
            aggregate.enrolments[self.enrolment_id].status = "cancelled"

    class Transferred(Event):
        TOPIC = "records:Pupil.Transferred"
        from_enrolment_id: UUID
        from_programme_id: UUID
        enrolment_id: UUID
        to_programme_id: UUID
        effective_date: date
        order: dict[str, Any]

        def apply(self, aggregate: Pupil) -> None:
            old = aggregate.enrolments[self.from_enrolment_id]
            old.status = "transferred"
            old.last_day = self.effective_date - timedelta(days=1)
            old.has_records = True
            aggregate.enrolments[self.enrolment_id] = Enrolment(
                id=self.enrolment_id,
                programme_id=self.to_programme_id,
                effective_date=self.effective_date,
                order=self.order,
                sequence=self.originator_version,
                by_transfer=True,
            )

    class Expelled(Event):
        TOPIC = "records:Pupil.Expelled"
        expulsion_id: UUID
        enrolment_id: UUID
        programme_id: UUID
        effective_date: date
        ground: str
        ground_detail: str | None
        order: dict[str, Any]
        left_centre: bool
        file_closed_on: date | None
        expelled_on: date | None

        def apply(self, aggregate: Pupil) -> None:
            enrolment = aggregate.enrolments[self.enrolment_id]
            enrolment.status = "expelled"
            enrolment.last_day = self.effective_date
            enrolment.expulsions.append(
                Expulsion(
                    id=self.expulsion_id,
                    effective_date=self.effective_date,
                    ground=self.ground,
                    ground_detail=self.ground_detail,
                    order=self.order,
                    sequence=self.originator_version,
                )
            )

    class ExpulsionCancelled(Event):
        TOPIC = "records:Pupil.ExpulsionCancelled"
        expulsion_id: UUID
        enrolment_id: UUID
        order: dict[str, Any]
        reason: str
        reopened_file: bool

        def apply(self, aggregate: Pupil) -> None:
            enrolment = aggregate.enrolments[self.enrolment_id]
            expulsion = enrolment.expulsion
            assert expulsion is not None and expulsion.id == self.expulsion_id
            expulsion.cancelled = True
            enrolment.status = "active"
            enrolment.last_day = None

    class AttestationRecorded(Event):
        TOPIC = "records:Pupil.AttestationRecorded"
        attestation_id: UUID
        programme_id: UUID
        enrolment_id: UUID
        kind: str
        date: date
        scores: dict[str, int]
        total: int
        max_total: int
        level: str
        thresholds: dict[str, str]
        protocol: dict[str, Any]

        def apply(self, aggregate: Pupil) -> None:
            aggregate.enrolments[self.enrolment_id].has_records = True
            aggregate.attestations[self.attestation_id] = Attestation(
                id=self.attestation_id,
                programme_id=self.programme_id,
                enrolment_id=self.enrolment_id,
                kind=self.kind,
                date=self.date,
                scores=_copy(self.scores),
                total=self.total,
                max_total=self.max_total,
                level=self.level,
                thresholds=dict(self.thresholds),
                protocol=self.protocol,
            )

    class AttestationCorrected(Event):
        TOPIC = "records:Pupil.AttestationCorrected"
        attestation_id: UUID
        scores: dict[str, int]
        total: int
        level: str
        reason: str

        def apply(self, aggregate: Pupil) -> None:
            attestation = aggregate.attestations[self.attestation_id]
            attestation.scores = _copy(self.scores)
            attestation.total = self.total
            attestation.level = self.level
            attestation.corrected = True

    class AttendanceBegan(Event):
        """A journal recorded the first attendance under an enrolment in it.

        One event is stored per enrolment and journal. Logs written before
        this rule hold one per enrolment, for the first journal only.
        """

        TOPIC = "records:Pupil.AttendanceBegan"
        enrolment_id: UUID
        journal_id: UUID
        session_date: date

        def apply(self, aggregate: Pupil) -> None:
            enrolment = aggregate.enrolments[self.enrolment_id]
            enrolment.has_records = True
            if self.journal_id not in enrolment.journal_ids:
                enrolment.journal_ids.append(self.journal_id)

    class PersonalDataDestroyed(Event):
        """The pupil's data key was destroyed under an act; the file is closed."""

        TOPIC = "records:Pupil.PersonalDataDestroyed"
        destruction_id: UUID
        act: dict[str, Any]
        reason: str
        destroyed_at: datetime
        categories: list[str]

        def apply(self, aggregate: Pupil) -> None:
            aggregate.destruction = self.details()
            aggregate.forget_personal_data()

        def details(self) -> dict[str, Any]:
            """Return what the destruction record states: act, reason, time, actor."""
            return {
                "id": self.destruction_id,
                "act": dict(self.act),
                "reason": self.reason,
                "destroyed_at": self.destroyed_at,
                "categories": list(self.categories),
                "actor": {"name": self.actor["name"], "role": self.actor["role"]},
            }

    def __init__(self) -> None:
        pass

    # Registration

    @classmethod
    def register(
        cls,
        *,
        surname: str,
        name: str,
        patronymic: str | None,
        birth_date: date,
        opened_on: date,
    ) -> Pupil:
        """Open the personal file of a newly registered pupil."""
        check_dates(
            {
                "birth_date": (birth_date, EARLIEST_BIRTH_DATE),
                "opened_on": (opened_on, EARLIEST_DOCUMENT_DATE),
            }
        )
        if birth_date > opened_on:
            raise RuleViolationError("the file cannot be opened before the birth date")
        return cls._create(
            cls.Registered,
            surname=surname,
            name=name,
            patronymic=patronymic,
            birth_date=birth_date,
            opened_on=opened_on,
        )

    # Derived state

    @property
    def is_destroyed(self) -> bool:
        """Tell whether the pupil's personal data were destroyed."""
        return self.destruction is not None

    @property
    def status(self) -> str:
        """Return `registered`, `enrolled` or `left`."""
        statuses = {e.status for e in self.enrolments.values()}
        if "active" in statuses:
            return "enrolled"
        if "expelled" in statuses:
            return "left"
        return "registered"

    @property
    def leaving_expulsion(self) -> Expulsion | None:
        """Return the expulsion that closed the file, while it is closed."""
        return _leaving_expulsion(list(self.enrolments.values()))

    @property
    def file_closed_on(self) -> date | None:
        """Return the later of the leaving order's date and effective date."""
        return _closure_date(self.leaving_expulsion)

    def active_enrolment(self, programme_id: UUID) -> Enrolment | None:
        for enrolment in self.enrolments.values():
            if enrolment.programme_id == programme_id and enrolment.status == "active":
                return enrolment
        return None

    def enrolment_on(self, programme_id: UUID, day: date) -> Enrolment | None:
        """Return the enrolment in `programme_id` covering `day`, if any."""
        for enrolment in self.enrolments.values():
            if enrolment.programme_id == programme_id and enrolment.covers(day):
                return enrolment
        return None

    def enrolment(self, enrolment_id: UUID) -> Enrolment:
        try:
            return self.enrolments[enrolment_id]
        except KeyError:
            raise NotFoundError("enrolment", enrolment_id) from None

    def find_expulsion(self, expulsion_id: UUID) -> tuple[Enrolment, Expulsion]:
        for enrolment in self.enrolments.values():
            for expulsion in enrolment.expulsions:
                if expulsion.id == expulsion_id:
                    return enrolment, expulsion
        raise NotFoundError("expulsion", expulsion_id)

    def attestation(self, attestation_id: UUID) -> Attestation:
        try:
            return self.attestations[attestation_id]
        except KeyError:
            raise NotFoundError("attestation", attestation_id) from None

    def forget_personal_data(self) -> None:
        """Drop the names, birth date and results this object holds in memory."""
        self.surname = self.name = self.patronymic = None
        self.birth_date = None
        for attestation in self.attestations.values():
            attestation.scores = attestation.total = attestation.level = None
        for enrolment in self.enrolments.values():
            for expulsion in enrolment.expulsions:
                expulsion.ground_detail = None

    # Commands

    def enrol(
        self,
        *,
        programme_id: UUID,
        effective_date: date,
        order: dict[str, Any],
    ) -> UUID:
        """Enrol the pupil in a programme; re-admission reopens a closed file."""
        _check_order_dates(effective_date, order)
        self.check_not_destroyed()
        self._check_not_before_birth(effective_date)
        self._check_can_start(programme_id, effective_date)
        leaving = self.leaving_expulsion
        if leaving is not None and effective_date <= leaving.effective_date:
            raise RuleViolationError(
                "re-admission must take effect after the last day of the pupil's "
                f"last expulsion ({leaving.effective_date.isoformat()})"
            )
        enrolment_id = uuid4()
        self.trigger_event(
            self.Enrolled,
            enrolment_id=enrolment_id,
            programme_id=programme_id,
            effective_date=effective_date,
            order=order,
            reopened_file=self.status == "left",
        )
        return enrolment_id

    def cancel_enrolment(
        self, *, enrolment_id: UUID, order: dict[str, Any], reason: str
    ) -> None:
        """Void an enrolment order made by mistake, while nothing rests on it."""
        self.check_not_destroyed()
        enrolment = self.enrolment(enrolment_id)
        if enrolment.status != "active":
            raise RuleViolationError(
                f"only an active enrolment can be cancelled; this one is "
                f"{enrolment.status}"
            )
        if enrolment.by_transfer:
            raise RuleViolationError(
                "an enrolment made by a transfer cannot be cancelled on its own"
            )
        if enrolment.has_records:
            raise RuleViolationError(
                "the enrolment has attestation or attendance recorded under it"
            )
        if order["date"] < enrolment.order["date"]:
            raise RuleViolationError(
                "the cancelling order cannot predate the enrolment order"
            )
        remaining = [
            e
            for e in self.enrolments.values()
            if e.id != enrolment_id and e.status != "cancelled"
        ]
        restored = _leaving_expulsion(remaining)
        self.trigger_event(
            self.EnrolmentCancelled,
            enrolment_id=enrolment_id,
            order=order,
            reason=reason,
            left_centre=restored is not None,
            file_closed_on=_closure_date(restored),
            expelled_on=restored.effective_date if restored else None,
        )

    def transfer(
        self,
        *,
        from_programme_id: UUID,
        to_programme_id: UUID,
        effective_date: date,
        order: dict[str, Any],
        latest_sessions: Mapping[UUID, date] | None = None,
    ) -> UUID:
        """Move the pupil from one programme to another inside the centre.

        `latest_sessions` maps each journal that lists the pupil under the
        enrolment being ended to the latest session date listing them. No
        such session may fall on or after the transfer's effective date.
        """
        _check_order_dates(effective_date, order)
        self.check_not_destroyed()
        if from_programme_id == to_programme_id:
            raise RuleViolationError("a transfer needs two different programmes")
        current = self.active_enrolment(from_programme_id)
        if current is None:
            raise RuleViolationError(
                "the pupil is not enrolled in the programme to transfer from"
            )
        if effective_date <= current.effective_date:
            raise RuleViolationError(
                "a transfer must take effect after the enrolment it ends "
                f"({current.effective_date.isoformat()})"
            )
        _check_not_before_order("transfer", order, current)
        self._check_no_records_after(
            current, effective_date - timedelta(days=1), latest_sessions or {}
        )
        self._check_not_before_birth(effective_date)
        self._check_can_start(to_programme_id, effective_date)
        enrolment_id = uuid4()
        self.trigger_event(
            self.Transferred,
            from_enrolment_id=current.id,
            from_programme_id=from_programme_id,
            enrolment_id=enrolment_id,
            to_programme_id=to_programme_id,
            effective_date=effective_date,
            order=order,
        )
        return enrolment_id

    def expel(
        self,
        *,
        programme_id: UUID,
        effective_date: date,
        ground: str,
        ground_detail: str | None,
        order: dict[str, Any],
        latest_sessions: Mapping[UUID, date] | None = None,
    ) -> UUID:
        """Expel the pupil from one programme; the last one closes the file.

        `latest_sessions` maps each journal that lists the pupil under the
        enrolment to the latest session date listing them. No such session
        may fall after the expulsion's effective date, the pupil's last day.
        """
        if ground not in GROUNDS:
            raise ValueError(f"unknown ground {ground!r}")
        _check_order_dates(effective_date, order)
        self.check_not_destroyed()
        enrolment = self.active_enrolment(programme_id)
        if enrolment is None:
            raise RuleViolationError("the pupil is not enrolled in this programme")
        if effective_date < enrolment.effective_date:
            raise RuleViolationError(
                "an expulsion cannot take effect before the enrolment "
                f"({enrolment.effective_date.isoformat()})"
            )
        _check_not_before_order("expulsion", order, enrolment)
        self._check_no_records_after(enrolment, effective_date, latest_sessions or {})
        others_active = any(
            e.status == "active" and e.id != enrolment.id
            for e in self.enrolments.values()
        )
        left_centre = not others_active
        leaving: tuple[date, date] | None = None
        if left_centre:
            # The file closes with the expulsion that ends the last programme,
            # which need not be the one recorded last.
            standing = [
                (e.expulsion.effective_date, e.expulsion.order["date"])
                for e in self.enrolments.values()
                if e.status == "expelled" and e.expulsion and not e.expulsion.cancelled
            ]
            leaving = max([*standing, (effective_date, order["date"])])
        expulsion_id = uuid4()
        self.trigger_event(
            self.Expelled,
            expulsion_id=expulsion_id,
            enrolment_id=enrolment.id,
            programme_id=programme_id,
            effective_date=effective_date,
            ground=ground,
            ground_detail=ground_detail,
            order=order,
            left_centre=left_centre,
            file_closed_on=max(leaving) if leaving else None,
            expelled_on=leaving[0] if leaving else None,
        )
        return expulsion_id

    def cancel_expulsion(
        self, *, expulsion_id: UUID, order: dict[str, Any], reason: str
    ) -> None:
        """Void an expulsion order: the enrolment is active again."""
        self.check_not_destroyed()
        enrolment, expulsion = self.find_expulsion(expulsion_id)
        if expulsion.cancelled:
            raise RuleViolationError("the expulsion is already cancelled")
        later = [
            e
            for e in self.enrolments.values()
            if e.programme_id == enrolment.programme_id
            and e.sequence > enrolment.sequence
            and e.status != "cancelled"
        ]
        if later:
            raise RuleViolationError(
                "the pupil was enrolled in this programme again since the expulsion"
            )
        if self.active_enrolment(enrolment.programme_id) is not None:
            raise RuleViolationError("the pupil is enrolled in this programme again")
        if order["date"] < expulsion.order["date"]:
            raise RuleViolationError(
                "the cancelling order cannot predate the expulsion order"
            )
        self.trigger_event(
            self.ExpulsionCancelled,
            expulsion_id=expulsion_id,
            enrolment_id=enrolment.id,
            order=order,
            reason=reason,
            reopened_file=self.status == "left",
        )

    def record_attestation(
        self,
        *,
        programme: Programme,
        kind: str,
        on: date,
        scores: dict[str, int],
        protocol: dict[str, Any],
    ) -> UUID:
        """Record an attestation result in a programme the pupil attends or left."""
        if kind not in ATTESTATION_KINDS:
            raise ValueError(f"unknown attestation kind {kind!r}")
        check_dates(
            {
                "date": (on, EARLIEST_DOCUMENT_DATE),
                "protocol.date": (protocol["date"], on),
            }
        )
        self.check_not_destroyed()
        total, level = programme.grade(scores)
        enrolment = self.enrolment_on(programme.id, on)
        if enrolment is None:
            raise RuleViolationError(
                "the pupil was not enrolled in this programme on the attestation date"
            )
        attestation_id = uuid4()
        self.trigger_event(
            self.AttestationRecorded,
            attestation_id=attestation_id,
            programme_id=programme.id,
            enrolment_id=enrolment.id,
            kind=kind,
            date=on,
            scores=dict(scores),
            total=total,
            max_total=programme.max_total,
            level=level,
            thresholds=dict(programme.levels),
            protocol=protocol,
        )
        return attestation_id

    def correct_attestation(
        self,
        *,
        attestation_id: UUID,
        programme: Programme,
        scores: dict[str, int],
        reason: str,
    ) -> None:
        """Replace an attestation's scores; the original stays in the history."""
        self.check_not_destroyed()
        attestation = self.attestation(attestation_id)
        total, level = programme.grade(scores)
        if scores == attestation.scores:
            raise RuleViolationError("the correction does not change any score")
        self.trigger_event(
            self.AttestationCorrected,
            attestation_id=attestation.id,
            scores=dict(scores),
            total=total,
            level=level,
            reason=reason,
        )

    def note_attendance(
        self, *, programme_id: UUID, day: date, journal_id: UUID
    ) -> None:
        """Record that `journal_id` lists the pupil under the enrolment of `day`."""
        self.check_not_destroyed()
        enrolment = self.enrolment_on(programme_id, day)
        if enrolment is None:
            raise NotEnrolledError(self.id, day)
        if journal_id not in enrolment.journal_ids:
            self.trigger_event(
                self.AttendanceBegan,
                enrolment_id=enrolment.id,
                journal_id=journal_id,
                session_date=day,
            )

    def destroy_personal_data(
        self, *, act: dict[str, Any], reason: str, destroyed_at: datetime
    ) -> UUID:
        """Record the destruction of the pupil's personal data under an act.

        Only a closed file (the pupil left the centre) may be destroyed, and
        the act cannot predate the file's closure.
        """
        self.check_not_destroyed()
        if self.status != "left":
            raise RuleViolationError(self._not_closed_message())
        closed_on = self.file_closed_on
        if closed_on is not None and act["date"] < closed_on:
            raise RuleViolationError(
                f"the destruction act cannot predate the file's closure "
                f"({closed_on.isoformat()})"
            )
        destruction_id = uuid4()
        self.trigger_event(
            self.PersonalDataDestroyed,
            destruction_id=destruction_id,
            act=act,
            reason=reason,
            destroyed_at=destroyed_at,
            categories=list(PERSONAL_DATA_CATEGORIES),
        )
        return destruction_id

    # Rules shared by several commands

    def check_not_destroyed(self) -> None:
        """Raise `PersonalDataDestroyedError` once the personal data were destroyed."""
        if self.destruction is not None:
            raise PersonalDataDestroyedError(self.id, self.destruction["act"])

    def _check_can_start(self, programme_id: UUID, effective_date: date) -> None:
        if self.active_enrolment(programme_id) is not None:
            raise RuleViolationError("the pupil is already enrolled in this programme")
        for enrolment in self.enrolments.values():
            if (
                enrolment.programme_id == programme_id
                and enrolment.status != "cancelled"
                and enrolment.last_day is not None
                and effective_date <= enrolment.last_day
            ):
                raise RuleViolationError(
                    "the new enrolment must take effect after the last day of the "
                    f"previous one in this programme ({enrolment.last_day.isoformat()})"
                )

    def _not_closed_message(self) -> str:
        start = "only the file of a pupil who left the centre can be destroyed"
        if self.status == "enrolled":
            active = sum(e.status == "active" for e in self.enrolments.values())
            return (
                f"{start}; this file is enrolled in {active} programme(s). It "
                "closes, and its retention period starts, when an expulsion "
                "ends the last of them"
            )
        # A registered file has no standing enrolment: none was made, or each
        # was cancelled as made by mistake. The file plan sets retention only
        # for files closed by the pupil's leaving, so nothing starts the count.
        return (
            f"{start}; this file is registered: no enrolment in it stands, so it "
            "was never closed and no retention period runs for it. A file "
            "becomes destroyable only after the pupil leaves the centre, when "
            "an expulsion ends their last programme"
        )

    def _check_not_before_birth(self, effective_date: date) -> None:
        # Records of earlier years are entered after the fact, so neither the
        # day the file was opened nor the programme's approval bounds the date.
        if self.birth_date is not None and effective_date < self.birth_date:
            raise RuleViolationError(
                "an enrolment cannot take effect before the pupil's birth date "
                f"({self.birth_date.isoformat()})"
            )

    def _check_no_records_after(
        self,
        enrolment: Enrolment,
        last_day: date,
        latest_sessions: Mapping[UUID, date],
    ) -> None:
        for attestation in self.attestations.values():
            if attestation.enrolment_id == enrolment.id and attestation.date > last_day:
                raise RuleViolationError(
                    "an attestation is recorded under this enrolment after "
                    f"{last_day.isoformat()}"
                )
        for journal_id in enrolment.journal_ids:
            latest = latest_sessions.get(journal_id)
            if latest is not None and latest > last_day:
                raise RuleViolationError(
                    f"journal {journal_id} lists the pupil at a session on "
                    f"{latest.isoformat()}, after the last day "
                    f"{last_day.isoformat()}; the pupil's last day must be on or "
                    "after their last session"
                )


def _leaving_expulsion(enrolments: list[Enrolment]) -> Expulsion | None:
    """Return the last standing expulsion when no enrolment is active."""
    if any(enrolment.status == "active" for enrolment in enrolments):
        return None
    standing = [
        expulsion
        for enrolment in enrolments
        if enrolment.status == "expelled"
        for expulsion in enrolment.expulsions
        if not expulsion.cancelled
    ]
    return max(
        standing,
        key=lambda e: (e.effective_date, e.order["date"], e.sequence),
        default=None,
    )


def _check_order_dates(effective_date: date, order: dict[str, Any]) -> None:
    check_dates(
        {
            "effective_date": (effective_date, EARLIEST_DOCUMENT_DATE),
            "order.date": (order["date"], EARLIEST_DOCUMENT_DATE),
        }
    )


def _check_not_before_order(
    kind: str, order: dict[str, Any], enrolment: Enrolment
) -> None:
    signed_on = enrolment.order["date"]
    if order["date"] < signed_on:
        raise RuleViolationError(
            f"the {kind} order cannot predate the order of the enrolment it ends "
            f"({signed_on.isoformat()})"
        )


def _copy(scores: dict[str, int] | None) -> dict[str, int] | None:
    return None if scores is None else dict(scores)


def _closure_date(expulsion: Expulsion | None) -> date | None:
    if expulsion is None:
        return None
    return max(expulsion.order["date"], expulsion.effective_date)


class PupilIdentity(Aggregate):
    """Claims a normalised full name with a birth date for one pupil.

    Its id is an HMAC of the name and birth date under a secret key, so the
    id reveals neither to someone without the key. A destruction of the
    pupil's personal data releases the claim.
    """

    TOPIC = "records:PupilIdentity"

    class Event(Aggregate.Event):
        TOPIC = "records:PupilIdentity.Event"

    class Created(Event, Aggregate.Created):
        TOPIC = "records:PupilIdentity.Created"

    class Claimed(Created):
        TOPIC = "records:PupilIdentity.Claimed"
        pupil_id: UUID

        def apply(self, aggregate: PupilIdentity) -> None:
            aggregate.pupil_id = self.pupil_id

    class Released(Event):
        """The pupil's personal data were destroyed; the identity is free again."""

        TOPIC = "records:PupilIdentity.Released"

        def apply(self, aggregate: PupilIdentity) -> None:
            aggregate.pupil_id = None

    class Reclaimed(Event):
        TOPIC = "records:PupilIdentity.Reclaimed"
        pupil_id: UUID

        def apply(self, aggregate: PupilIdentity) -> None:
            aggregate.pupil_id = self.pupil_id

    pupil_id: UUID | None

    def __init__(self) -> None:
        pass

    @staticmethod
    def id_for(
        secret: bytes,
        surname: str,
        name: str,
        patronymic: str | None,
        birth_date: date,
    ) -> UUID:
        """Return the identity id of a full name and birth date under `secret`.

        NOTE: a pupil registered before dash variants, spaces next to a hyphen
        and stress marks were folded holds the identity under the id of the
        name folded without them, so only that spelling's id finds the claim
        and its release.
        """
        key = normalised_full_name(surname, name, patronymic)
        message = f"{birth_date.isoformat()}/{key}".encode()
        digest = hmac.new(secret, message, hashlib.sha256).digest()
        return UUID(bytes=digest[:16], version=4)

    @classmethod
    def claim(cls, identity_id: UUID, pupil_id: UUID) -> PupilIdentity:
        """Create the identity `identity_id`, claimed by a newly registered pupil."""
        return cls._create(cls.Claimed, id=identity_id, pupil_id=pupil_id)

    def reclaim(self, pupil_id: UUID) -> None:
        """Claim a released identity for a newly registered pupil."""
        if self.pupil_id is not None:
            raise RuleViolationError("the identity is claimed by another pupil")
        self.trigger_event(self.Reclaimed, pupil_id=pupil_id)

    def release(self) -> None:
        """Free the identity after the pupil's personal data were destroyed."""
        if self.pupil_id is not None:
            self.trigger_event(self.Released)
