"""RecordsApplication: the service layer of the records service."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import (
    AggregateNotFoundError,
    Application,
    Cache,
    LRUCache,
    Repository,
)
from eventsourcing.persistence import (
    IntegrityError,
    JSONTranscoder,
    Mapper,
    Recording,
)
from eventsourcing.utils import strtobool

from services.records.domain.errors import (
    ConcurrentChangeError,
    DuplicateProgrammeError,
    DuplicatePupilError,
    InvalidFieldError,
    NotEnrolledError,
    NotFoundError,
    PersonalDataDestroyedError,
    RuleViolationError,
)
from services.records.domain.journals import Journal
from services.records.domain.programmes import Programme, ProgrammeCode
from services.records.domain.pupils import Pupil, PupilIdentity
from services.records.domain.serialise import (
    attestation_view,
    destruction_record,
    enrolment_view,
    expulsion_view,
    journal_view,
    programme_view,
    pupil_summary,
    session_view,
)
from services.records.keys import (
    DataKeyDestroyedError,
    KeyRing,
    MasterKey,
    default_master_key,
    open_key_ring,
)
from services.records.sealing import SealingMapper
from shared.clock import utc_now
from shared.repository import ConsistentRepository
from shared.storage import eventsourcing_env
from shared.transcodings import register_civil_dates

logger = logging.getLogger(__name__)

T = TypeVar("T")
COMMAND_ATTEMPTS = 3


@dataclass(frozen=True)
class CommandResult:
    """What a command changed, as plain data, and the log position it reached."""

    resource: dict[str, Any]
    position: int


# Programmes kept in memory by each process; a centre has a few dozen.
PROGRAMME_CACHE_SIZE = 1000


class RecordsApplication(Application[UUID]):
    """Programmes, pupils' personal files and session journals."""

    name = "records"
    log_section_size = 1000

    def __init__(
        self,
        database_url: str,
        env: dict[str, str] | None = None,
        *,
        master_key: MasterKey | None = None,
    ) -> None:
        """Open the records store; without `master_key`, see `default_master_key`."""
        merged = eventsourcing_env(database_url)
        merged.update(env or {})
        key = master_key if master_key is not None else default_master_key(database_url)
        self.key_ring: KeyRing = open_key_ring(database_url, key)
        self._programmes: dict[UUID, Programme] = {}
        try:
            super().__init__(env=merged)
        except BaseException:
            self.key_ring.close()
            raise

    def construct_repository(self) -> Repository[UUID]:
        """Build the repository the library would, with loads of one id taking turns."""
        maxsize = self.env.get(self.AGGREGATE_CACHE_MAXSIZE)
        return ConsistentRepository(
            event_store=self.events,
            snapshot_store=self.snapshots,
            cache_maxsize=int(maxsize) if maxsize else None,
            fastforward=strtobool(self.env.get(self.AGGREGATE_CACHE_FASTFORWARD, "y")),
            fastforward_skipping=strtobool(
                self.env.get(self.AGGREGATE_CACHE_FASTFORWARD_SKIPPING, "n")
            ),
            deepcopy_from_cache=strtobool(
                self.env.get(self.DEEPCOPY_FROM_AGGREGATE_CACHE, "y")
            ),
        )

    def construct_mapper(self) -> Mapper[UUID]:
        """Build the mapper that seals personal data with each pupil's key."""
        return SealingMapper(
            transcoder=self.construct_transcoder(),
            key_ring=self.key_ring,
            compressor=self.factory.compressor(),
            cipher=self.factory.cipher(),
        )

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        super().register_transcodings(transcoder)
        register_civil_dates(transcoder)

    def close(self) -> None:
        """Close the event store and the key ring."""
        super().close()
        key_ring = getattr(self, "key_ring", None)
        if key_ring is not None:
            key_ring.close()

    # Programmes

    def create_programme(
        self,
        *,
        code: str,
        title: str,
        orientation: str,
        approved_order: dict[str, Any],
        criteria: list[dict[str, Any]],
        high: Decimal,
        medium: Decimal,
    ) -> CommandResult:
        """Enter a programme; its code must be new."""
        # The fields are checked (422) before the stored codes (409).
        programme = Programme.approve(
            code=code,
            title=title,
            orientation=orientation,
            approved_order=approved_order,
            criteria=criteria,
            high=high,
            medium=medium,
        )
        if ProgrammeCode.id_for(code) in self.repository:
            raise DuplicateProgrammeError(f"a programme with code {code!r} exists")
        claim = ProgrammeCode.claim(code, programme.id)
        try:
            recordings = self.save(programme, claim)
        except IntegrityError:
            raise DuplicateProgrammeError(
                f"a programme with code {code!r} exists"
            ) from None
        return self._result(programme_view(programme), recordings)

    def programme(self, programme_id: UUID, *, field: str | None = None) -> Programme:
        """Load a programme; unknown ids are 404 in a path and 422 in a `field`.

        A programme has no event after its approval, so a loaded programme
        never goes stale and is kept for the life of the process.
        """
        programme = self._programmes.get(programme_id)
        if programme is None:
            programme = self._load(Programme, programme_id, "programme", field)
            if len(self._programmes) >= PROGRAMME_CACHE_SIZE:
                self._programmes.clear()
            self._programmes[programme_id] = programme
        return programme

    # Pupils

    def register_pupil(
        self,
        *,
        surname: str,
        name: str,
        patronymic: str | None,
        birth_date: date,
        opened_on: date,
    ) -> CommandResult:
        """Open a personal file, unless the same pupil is already registered."""
        identity_id = PupilIdentity.id_for(
            self.key_ring.identity_secret, surname, name, patronymic, birth_date
        )
        identity = self._free_identity(identity_id)
        pupil = Pupil.register(
            surname=surname,
            name=name,
            patronymic=patronymic,
            birth_date=birth_date,
            opened_on=opened_on,
        )
        if identity is None:
            identity = PupilIdentity.claim(identity_id, pupil.id)
        else:
            identity.reclaim(pupil.id)
        try:
            recordings = self.save(pupil, identity)
        except IntegrityError:
            self._free_identity(identity_id)
            raise ConcurrentChangeError("registration conflicted; retry") from None
        return self._result(pupil_summary(pupil), recordings)

    def _free_identity(self, identity_id: UUID) -> PupilIdentity | None:
        """Return a released identity, None for a new one; raise if it is claimed."""
        try:
            identity: PupilIdentity = self.repository.get(identity_id)
        except AggregateNotFoundError:
            return None
        if identity.pupil_id is not None:
            raise DuplicatePupilError(identity.pupil_id)
        return identity

    def pupil(self, pupil_id: UUID) -> Pupil:
        """Load a pupil for a command, learning first whether their key was destroyed.

        A pupil whose destruction event is stored but whose key still exists
        (the process stopped in between) has the key destroyed now.
        """
        self._learn_destructions([pupil_id])
        return self._load_pupil(pupil_id)

    def _learn_destructions(self, pupil_ids: list[UUID]) -> None:
        if self.key_ring.destroyed_among(pupil_ids):
            self._forget_cached_aggregates()

    def _load_pupil(self, pupil_id: UUID) -> Pupil:
        pupil = self._load(Pupil, pupil_id, "pupil", None)
        if pupil.is_destroyed:
            self._finish_destruction(pupil.id)
        return pupil

    def destroy_personal_data(
        self, pupil_id: UUID, *, act: dict[str, Any], reason: str
    ) -> CommandResult:
        """Destroy a departed pupil's personal data: record the act, shred the key."""

        def command() -> tuple[dict[str, Any], Sequence[Recording]]:
            pupil = self.pupil(pupil_id)
            identity = self._identity_of(pupil)
            pupil.destroy_personal_data(act=act, reason=reason, destroyed_at=utc_now())
            changed: list[Any] = []
            if identity is not None:
                identity.release()
                changed.append(identity)
            # The destruction event comes last, so its position is the result's.
            recordings = self.save(*changed, pupil)
            assert pupil.destruction is not None
            return destruction_record(pupil.id, pupil.destruction), recordings

        result = self._retrying(command)
        self._finish_destruction(pupil_id)
        return result

    def _identity_of(self, pupil: Pupil) -> PupilIdentity | None:
        if pupil.surname is None or pupil.name is None or pupil.birth_date is None:
            return None
        identity_id = PupilIdentity.id_for(
            self.key_ring.identity_secret,
            pupil.surname,
            pupil.name,
            pupil.patronymic,
            pupil.birth_date,
        )
        try:
            identity: PupilIdentity = self.repository.get(identity_id)
        except AggregateNotFoundError:
            return None
        return identity if identity.pupil_id == pupil.id else None

    def _finish_destruction(self, pupil_id: UUID) -> None:
        if self.key_ring.destroy(pupil_id):
            self.key_ring.scrub()
        self._forget_cached_aggregates()

    def _forget_cached_aggregates(self) -> None:
        # Cached aggregates may contain a destroyed pupil's decrypted data.
        # The cache is replaced, because the library's LRUCache.clear() leaves
        # its index in place; threads still using the old cache finish with it.
        cache = self.repository.cache
        if isinstance(cache, LRUCache):
            self.repository.cache = LRUCache(maxsize=cache.maxsize)
        elif cache is not None:
            self.repository.cache = Cache()

    def destruction(self, pupil_id: UUID) -> dict[str, Any] | None:
        """Return the record of the destruction of a pupil's personal data, if any.

        Nothing can be recorded for a pupil after the destruction, so it is
        the last event of the pupil's stream.
        """
        stored = self.recorder.select_events(pupil_id, desc=True, limit=1)
        if not stored or stored[0].topic != Pupil.PersonalDataDestroyed.TOPIC:
            return None
        event = self.mapper.to_domain_event(stored[0])
        assert isinstance(event, Pupil.PersonalDataDestroyed)
        return destruction_record(pupil_id, event.details())

    def enrol(
        self,
        pupil_id: UUID,
        *,
        programme_id: UUID,
        effective_date: date,
        order: dict[str, Any],
    ) -> CommandResult:
        """Enrol a pupil in a programme (a re-admission when the file is closed)."""
        self.programme(programme_id, field="programme_id")

        def command() -> tuple[dict[str, Any], Sequence[Recording]]:
            pupil = self.pupil(pupil_id)
            enrolment_id = pupil.enrol(
                programme_id=programme_id,
                effective_date=effective_date,
                order=order,
            )
            recordings = self.save(pupil)
            return enrolment_view(pupil.enrolments[enrolment_id]), recordings

        return self._retrying(command)

    def cancel_enrolment(
        self,
        pupil_id: UUID,
        enrolment_id: UUID,
        *,
        order: dict[str, Any],
        reason: str,
    ) -> CommandResult:
        """Void an enrolment order made by mistake."""

        def command() -> tuple[dict[str, Any], Sequence[Recording]]:
            pupil = self.pupil(pupil_id)
            pupil.cancel_enrolment(
                enrolment_id=enrolment_id, order=order, reason=reason
            )
            recordings = self.save(pupil)
            return enrolment_view(pupil.enrolments[enrolment_id]), recordings

        return self._retrying(command)

    def transfer(
        self,
        pupil_id: UUID,
        *,
        from_programme_id: UUID,
        to_programme_id: UUID,
        effective_date: date,
        order: dict[str, Any],
    ) -> CommandResult:
        """Move a pupil between programmes; the file stays open."""
        self.programme(from_programme_id, field="from_programme_id")
        self.programme(to_programme_id, field="to_programme_id")

        def command() -> tuple[dict[str, Any], Sequence[Recording]]:
            pupil = self.pupil(pupil_id)
            enrolment_id = pupil.transfer(
                from_programme_id=from_programme_id,
                to_programme_id=to_programme_id,
                effective_date=effective_date,
                order=order,
                latest_sessions=self._latest_sessions(pupil, from_programme_id),
            )
            recordings = self.save(pupil)
            return enrolment_view(pupil.enrolments[enrolment_id]), recordings

        return self._retrying(command)

    def expel(
        self,
        pupil_id: UUID,
        *,
        programme_id: UUID,
        effective_date: date,
        ground: str,
        ground_detail: str | None,
        order: dict[str, Any],
    ) -> CommandResult:
        """Expel a pupil from one programme."""
        self.programme(programme_id, field="programme_id")

        def command() -> tuple[dict[str, Any], Sequence[Recording]]:
            pupil = self.pupil(pupil_id)
            expulsion_id = pupil.expel(
                programme_id=programme_id,
                effective_date=effective_date,
                ground=ground,
                ground_detail=ground_detail,
                order=order,
                latest_sessions=self._latest_sessions(pupil, programme_id),
            )
            recordings = self.save(pupil)
            return expulsion_view(pupil, expulsion_id), recordings

        return self._retrying(command)

    def _latest_sessions(self, pupil: Pupil, programme_id: UUID) -> dict[UUID, date]:
        """Return, per journal listing the pupil under the active enrolment in
        `programme_id`, the latest session date listing them.

        NOTE: the expulsion or transfer writes only the pupil's stream, so a
        session recorded in one of these journals between this read and the
        save is not seen. That session's own check saw the pupil enrolled on
        its date, so only a backdated order racing it can leave attendance
        after the last day.
        """
        enrolment = pupil.active_enrolment(programme_id)
        if enrolment is None:
            return {}
        latest: dict[UUID, date] = {}
        for journal_id in enrolment.journal_ids:
            day = self.journal(journal_id).latest_session_with(pupil.id)
            if day is not None:
                latest[journal_id] = day
        return latest

    def cancel_expulsion(
        self,
        pupil_id: UUID,
        expulsion_id: UUID,
        *,
        order: dict[str, Any],
        reason: str,
    ) -> CommandResult:
        """Void an expulsion order; the enrolment is active again."""

        def command() -> tuple[dict[str, Any], Sequence[Recording]]:
            pupil = self.pupil(pupil_id)
            pupil.cancel_expulsion(
                expulsion_id=expulsion_id, order=order, reason=reason
            )
            recordings = self.save(pupil)
            return expulsion_view(pupil, expulsion_id), recordings

        return self._retrying(command)

    def record_attestation(
        self,
        pupil_id: UUID,
        *,
        programme_id: UUID,
        kind: str,
        on: date,
        scores: dict[str, int],
        protocol: dict[str, Any],
    ) -> CommandResult:
        """Record an attestation result; total and level come from the programme."""
        programme = self.programme(programme_id, field="programme_id")
        programme.check_scores(scores)

        def command() -> tuple[dict[str, Any], Sequence[Recording]]:
            pupil = self.pupil(pupil_id)
            attestation_id = pupil.record_attestation(
                programme=programme, kind=kind, on=on, scores=scores, protocol=protocol
            )
            recordings = self.save(pupil)
            return attestation_view(pupil.attestations[attestation_id]), recordings

        return self._retrying(command)

    def correct_attestation(
        self,
        pupil_id: UUID,
        attestation_id: UUID,
        *,
        scores: dict[str, int],
        reason: str,
    ) -> CommandResult:
        """Correct an attestation's scores, keeping the original in the history."""

        def command() -> tuple[dict[str, Any], Sequence[Recording]]:
            pupil = self.pupil(pupil_id)
            attestation = pupil.attestation(attestation_id)
            programme = self.programme(attestation.programme_id)
            pupil.correct_attestation(
                attestation_id=attestation_id,
                programme=programme,
                scores=scores,
                reason=reason,
            )
            recordings = self.save(pupil)
            return attestation_view(pupil.attestations[attestation_id]), recordings

        return self._retrying(command)

    # Journals

    def open_journal(
        self,
        *,
        programme_id: UUID,
        specialist: dict[str, str],
        year_start: date,
        year_end: date,
        kind: str,
        group: str | None,
    ) -> CommandResult:
        """Open a session journal."""
        self.programme(programme_id, field="programme_id")
        journal = Journal.open(
            programme_id=programme_id,
            specialist=specialist,
            year_start=year_start,
            year_end=year_end,
            kind=kind,
            group=group,
        )
        return self._result(journal_view(journal), self.save(journal))

    def journal(self, journal_id: UUID) -> Journal:
        return self._load(Journal, journal_id, "journal", None)

    def record_session(
        self,
        journal_id: UUID,
        *,
        on: date,
        start_time: str,
        duration_minutes: int,
        topic: str,
        attendance: list[dict[str, Any]],
    ) -> CommandResult:
        """Record a session; every listed pupil must be enrolled that day."""

        def command() -> tuple[dict[str, Any], Sequence[Recording]]:
            journal = self.journal(journal_id)
            journal.check_session_date(on)
            pupils = self._attending_pupils(attendance)
            session_id = journal.record_session(
                on=on,
                start_time=start_time,
                duration_minutes=duration_minutes,
                topic=topic,
                attendance=attendance,
            )
            _note_attendance(pupils, journal, on)
            changed = [pupil for pupil in pupils if pupil.pending_events]
            recordings = self.save(journal, *changed)
            session = {"date": on, "start_time": start_time, "attendance": attendance}
            view = session_view(journal.id, session_id, session)
            view.update(duration_minutes=duration_minutes, topic=topic)
            return view, recordings

        return self._retrying(command)

    def _attending_pupils(self, attendance: list[dict[str, Any]]) -> list[Pupil]:
        pupils = []
        errors: dict[str, list[str]] = {}
        self._learn_destructions([line["pupil_id"] for line in attendance])
        for index, line in enumerate(attendance):
            try:
                pupil = self._load_pupil(line["pupil_id"])
            except NotFoundError:
                # The id of a journal or programme is no pupil either.
                errors[f"attendance.{index}.pupil_id"] = ["unknown pupil"]
            else:
                pupils.append(pupil)
        if errors:
            raise InvalidFieldError.many(errors)
        return pupils

    def close_journal(self, journal_id: UUID, *, closed_on: date) -> CommandResult:
        """Close a journal: no more sessions."""

        def command() -> tuple[dict[str, Any], Sequence[Recording]]:
            journal = self.journal(journal_id)
            journal.close(closed_on=closed_on)
            recordings = self.save(journal)
            return journal_view(journal), recordings

        return self._retrying(command)

    # Helpers

    def head_position(self) -> int:
        """Return the position of the newest event in the log (0 when empty)."""
        return self.recorder.max_notification_id() or 0

    def _load(
        self, kind: type[T], aggregate_id: UUID, label: str, field: str | None
    ) -> T:
        try:
            aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            aggregate = None
        if isinstance(aggregate, kind):
            return aggregate
        if field is not None:
            raise InvalidFieldError(field, f"unknown {label}")
        raise NotFoundError(label, aggregate_id)

    def _retrying(
        self, command: Callable[[], tuple[dict[str, Any], Sequence[Recording]]]
    ) -> CommandResult:
        # Optimistic concurrency: a concurrent write to the same aggregate makes
        # the save fail; the command is then decided again on the new state.
        for attempt in range(1, COMMAND_ATTEMPTS + 1):
            try:
                resource, recordings = command()
            except IntegrityError:
                logger.info(
                    "concurrent change, attempt %s of %s", attempt, COMMAND_ATTEMPTS
                )
                continue
            except DataKeyDestroyedError as error:
                # The key went while the command ran: a destruction won the race.
                raise PersonalDataDestroyedError(error.pupil_id) from None
            return self._result(resource, recordings)
        raise ConcurrentChangeError("the record was changed concurrently; retry")

    @staticmethod
    def _result(
        resource: dict[str, Any], recordings: Sequence[Recording]
    ) -> CommandResult:
        return CommandResult(resource=resource, position=recordings[-1].notification.id)


def _note_attendance(pupils: list[Pupil], journal: Journal, on: date) -> None:
    """Note a session on each listed pupil; name every line not enrolled that day.

    `pupils` are in the order of the attendance lines.
    """
    not_enrolled: dict[str, NotEnrolledError] = {}
    for index, pupil in enumerate(pupils):
        try:
            pupil.note_attendance(
                programme_id=journal.programme_id, day=on, journal_id=journal.id
            )
        except NotEnrolledError as error:
            not_enrolled[f"attendance.{index}.pupil_id"] = error
    if not not_enrolled:
        return
    errors = {path: [str(error)] for path, error in not_enrolled.items()}
    if len(not_enrolled) == 1:
        ((path, error),) = not_enrolled.items()
        raise RuleViolationError(f"{error} ({path})", errors=errors)
    named = ", ".join(
        f"{error.pupil_id} ({path})" for path, error in not_enrolled.items()
    )
    raise RuleViolationError(
        f"{len(not_enrolled)} listed pupils are not enrolled in the journal's "
        f"programme on {on.isoformat()}: {named}",
        errors=errors,
    )
