"""A realistic records log, written fast with batched saves through the aggregates.

The log is built in waves. A wave takes up to `MAX_COHORTS` groups of pupils
through one academic year. Each group's pupils are registered and enrolled in
the group's programme. The group gets a session journal with two sessions a
week and everyone's attendance, and an intermediate and a final attestation.
Some pupils leave mid-year, a few stay enrolled, and the rest are expelled on
completion. Then the journal is closed. Each step, and each ten sessions, is
one `save()` of every aggregate it changed across the wave's groups. So events
of different groups interleave in the log as they would in a centre, while the
database sees few, large transactions.

Events go through the records application's own aggregates, mapper and
recorder, with each pupil's personal data sealed with the pupil's key. So the
log is the one the services would write, except that timestamps lie close
together.
"""

from __future__ import annotations

import math
import multiprocessing
import random
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from bench.people import (
    ORIENTATION,
    PROGRAMME_TITLES,
    SESSION_TOPICS,
    SPECIALISTS,
    PupilNames,
    last_finished_year_start,
    programme_criteria,
)
from services.records.application import RecordsApplication
from services.records.domain.journals import Journal
from services.records.domain.programmes import Programme, ProgrammeCode
from services.records.domain.pupils import Pupil, PupilIdentity
from services.records.keys import load_master_key
from shared.actor import Principal, acting_as
from shared.config import Settings

MAX_COHORTS = 40
GROUP_SIZES = (6, 12)
SESSIONS_PER_GROUP = (24, 70)
SESSIONS_PER_SAVE = 10
YEARS_OF_HISTORY = 6
# Estimated events per group: two per registration (the file and the identity
# claim), enrolment, first attendance, two attestations and an expulsion per
# pupil, plus the sessions and the journal's opening and closure.
EVENTS_PER_PUPIL = 7
KEY_THREADS = 8
ATTENDANCE_WEIGHTS = {"present": 85, "absent": 4, "ill": 8, "excused": 3}
SESSION_TIMES = ("15:00", "15:30", "16:00", "16:30", "17:00", "17:30")

REGISTRAR = Principal(
    token_id="bench-registrar", name="Петрова Ирина", role="registrar"
)
METHODIST = Principal(token_id="bench-methodist", name="Зуева Марина", role="methodist")
SPECIALIST = Principal(
    token_id="bench-specialist", name="Орлова Анна", role="specialist"
)
ADMIN = Principal(token_id="bench-admin", name="Сидоров Павел", role="admin")


@dataclass
class Group:
    """One group of pupils in one programme for one academic year."""

    programme: Programme
    year_start: date
    year_end: date
    pupils: list[Pupil]
    session_days: list[tuple[date, str]]
    journal: Journal | None = None
    leavers: set[UUID] = field(default_factory=set)
    stayers: set[UUID] = field(default_factory=set)


class LogGenerator:
    """Appends realistic records events to a store through one application."""

    def __init__(
        self,
        app: RecordsApplication,
        programmes: Sequence[Programme],
        *,
        seed: int,
        partition: tuple[int, int] = (0, 1),
    ) -> None:
        if not programmes:
            raise ValueError("the log needs at least one programme")
        self.app = app
        self.programmes = list(programmes)
        self.rng = random.Random(seed)
        self.names = PupilNames(random.Random(seed + 1), partition)
        self.pupil_ids: list[UUID] = []
        self.events = 0
        self._orders = 0
        self._waves = self.rng.randrange(YEARS_OF_HISTORY)
        self._latest_year = last_finished_year_start(date.today())

    def grow_by(self, events: int) -> int:
        """Write waves until this generator has written `events`; return the count."""
        while self.events < events:
            groups = math.ceil((events - self.events) / events_per_group())
            self._wave(min(MAX_COHORTS, max(1, groups)))
        return self.events

    # Steps

    def _wave(self, group_count: int) -> None:
        start_year = self._latest_year - self._waves % YEARS_OF_HISTORY
        self._waves += 1
        year_start = first_working_day(date(start_year, 9, 1))
        year_end = date(start_year + 1, 5, 31)
        groups = [self._new_group(year_start, year_end) for _ in range(group_count)]

        self._register(groups)
        self._enrol(groups)
        self._open_journals(groups)
        self._sessions(groups, first=True)
        self._intermediate_attestations(groups)
        self._leave_mid_year(groups)
        self._sessions(groups, first=False)
        self._final_attestations(groups)
        self._complete_year(groups)
        self.pupil_ids.extend(p.id for g in groups for p in g.pupils)

    def _new_group(self, year_start: date, year_end: date) -> Group:
        rng = self.rng
        programme = rng.choice(self.programmes)
        days = _session_days(
            year_start, year_end, rng.randint(*SESSIONS_PER_GROUP), rng
        )
        return Group(programme, year_start, year_end, [], days)

    def _register(self, groups: list[Group]) -> None:
        changed: list[Any] = []
        with acting_as(REGISTRAR):
            for group in groups:
                born = (
                    date(group.year_start.year - 15, 1, 1),
                    date(group.year_start.year - 5, 12, 31),
                )
                for _ in range(self.rng.randint(*GROUP_SIZES)):
                    pupil, identity = self._registration(group, born)
                    group.pupils.append(pupil)
                    changed += [pupil, identity]
        self._ensure_keys([p.id for g in groups for p in g.pupils])
        self._save(changed)

    def _registration(
        self, group: Group, born: tuple[date, date]
    ) -> tuple[Pupil, PupilIdentity]:
        person = self.names.draw(born)
        pupil = Pupil.register(
            surname=person.surname,
            name=person.name,
            patronymic=person.patronymic,
            birth_date=person.birth_date,
            opened_on=group.year_start - timedelta(days=self.rng.randint(3, 20)),
        )
        identity_id = PupilIdentity.id_for(
            self.app.key_ring.identity_secret,
            person.surname,
            person.name,
            person.patronymic,
            person.birth_date,
        )
        return pupil, PupilIdentity.claim(identity_id, pupil.id)

    def _ensure_keys(self, pupil_ids: Sequence[UUID]) -> None:
        # Each new key is its own small transaction; concurrent ones share
        # the database's commits instead of waiting for each other.
        with ThreadPoolExecutor(KEY_THREADS) as pool:
            list(pool.map(self.app.key_ring.ensure_key, pupil_ids))

    def _enrol(self, groups: list[Group]) -> None:
        with acting_as(REGISTRAR):
            for group in groups:
                for pupil in group.pupils:
                    late = self.rng.random() < 0.2
                    offset = self.rng.randint(7, 30) if late else 0
                    starts = first_working_day(group.year_start + timedelta(offset))
                    pupil.enrol(
                        programme_id=group.programme.id,
                        effective_date=starts,
                        order=self._order("у", starts),
                    )
        self._save(p for g in groups for p in g.pupils)

    def _open_journals(self, groups: list[Group]) -> None:
        with acting_as(SPECIALIST):
            for number, group in enumerate(groups, start=1):
                name, position = self.rng.choice(SPECIALISTS)
                group.journal = Journal.open(
                    programme_id=group.programme.id,
                    specialist={"name": name, "position": position},
                    year_start=group.year_start,
                    year_end=group.year_end,
                    kind="group",
                    group=f"Группа {number}",
                )
        self._save(g.journal for g in groups if g.journal is not None)

    def _sessions(self, groups: list[Group], *, first: bool) -> None:
        plans = [_half(group.session_days, first) for group in groups]
        longest = max((len(plan) for plan in plans), default=0)
        for start in range(0, longest, SESSIONS_PER_SAVE):
            with acting_as(SPECIALIST):
                for group, plan in zip(groups, plans, strict=True):
                    for day, start_time in plan[start : start + SESSIONS_PER_SAVE]:
                        self._session(group, day, start_time)
            self._save_groups(groups)

    def _session(self, group: Group, day: date, start_time: str) -> None:
        journal = group.journal
        assert journal is not None
        present = [p for p in group.pupils if p.enrolment_on(group.programme.id, day)]
        if not present:
            return
        statuses = self.rng.choices(
            list(ATTENDANCE_WEIGHTS), list(ATTENDANCE_WEIGHTS.values()), k=len(present)
        )
        journal.record_session(
            on=day,
            start_time=start_time,
            duration_minutes=self.rng.choice((30, 40, 45)),
            topic=self.rng.choice(SESSION_TOPICS),
            attendance=[
                {"pupil_id": pupil.id, "status": status}
                for pupil, status in zip(present, statuses, strict=True)
            ],
        )
        for pupil in present:
            pupil.note_attendance(
                programme_id=group.programme.id, day=day, journal_id=journal.id
            )

    def _intermediate_attestations(self, groups: list[Group]) -> None:
        with acting_as(METHODIST):
            for group in groups:
                half = group.session_days[len(group.session_days) // 2 - 1][0]
                self._attest(group, "intermediate", half + timedelta(days=1))
        self._save_groups(groups)

    def _final_attestations(self, groups: list[Group]) -> None:
        with acting_as(METHODIST):
            for group in groups:
                last = group.session_days[-1][0]
                on = min(last + timedelta(days=1), group.year_end)
                self._attest(group, "final", on)
        self._save_groups(groups)

    def _attest(self, group: Group, kind: str, on: date) -> None:
        protocol = {"number": f"{self.rng.randint(1, 40)}-п", "date": on}
        for pupil in group.pupils:
            if pupil.id in group.leavers or not pupil.enrolment_on(
                group.programme.id, on
            ):
                continue
            scores = {
                c["code"]: self.rng.randint(3, 10) for c in group.programme.criteria
            }
            pupil.record_attestation(
                programme=group.programme,
                kind=kind,
                on=on,
                scores=scores,
                protocol=protocol,
            )

    def _leave_mid_year(self, groups: list[Group]) -> None:
        with acting_as(REGISTRAR):
            for group in groups:
                half = group.session_days[len(group.session_days) // 2 - 1][0]
                leaves_on = half + timedelta(days=2)
                for pupil in group.pupils:
                    if self.rng.random() < 0.1:
                        self._expel(pupil, group, leaves_on, "parents_request")
                        group.leavers.add(pupil.id)
        self._save_groups(groups)

    def _complete_year(self, groups: list[Group]) -> None:
        with acting_as(REGISTRAR):
            for group in groups:
                for pupil in group.pupils:
                    if pupil.id in group.leavers:
                        continue
                    if self.rng.random() < 0.05:
                        group.stayers.add(pupil.id)
                        continue
                    self._expel(pupil, group, group.year_end, "completed")
        with acting_as(SPECIALIST):
            for group in groups:
                assert group.journal is not None
                group.journal.close(closed_on=group.year_end)
        self._save_groups(groups)

    def _expel(self, pupil: Pupil, group: Group, on: date, ground: str) -> None:
        pupil.expel(
            programme_id=group.programme.id,
            effective_date=on,
            ground=ground,
            ground_detail=None,
            order=self._order("у", on),
        )

    # Saving

    def _order(self, series: str, signed_on: date) -> dict[str, Any]:
        self._orders += 1
        return {"number": f"{self._orders % 900 + 1}-{series}", "date": signed_on}

    def _save_groups(self, groups: list[Group]) -> None:
        journals = [g.journal for g in groups if g.journal is not None]
        self._save([*journals, *(p for g in groups for p in g.pupils)])

    def _save(self, aggregates: Iterable[Any]) -> None:
        changed = [a for a in aggregates if a.pending_events]
        if changed:
            self.events += len(self.app.save(*changed))


def events_per_group() -> float:
    """Return the estimated number of events one group adds to the log."""
    pupils = sum(GROUP_SIZES) / 2
    return pupils * EVENTS_PER_PUPIL + sum(SESSIONS_PER_GROUP) / 2 + 2


def approve_programmes(app: RecordsApplication) -> list[Programme]:
    """Save the centre's programmes, approved before the oldest academic year."""
    latest_year = last_finished_year_start(date.today())
    approved_on = date(latest_year - YEARS_OF_HISTORY, 8, 28)
    programmes: list[Programme] = []
    changed: list[Any] = []
    with acting_as(ADMIN):
        for index, title in enumerate(PROGRAMME_TITLES):
            code = f"ДОП-{index + 1:02d}"
            programme = Programme.approve(
                code=code,
                title=title,
                orientation=ORIENTATION,
                approved_order={"number": f"{index + 12}-од", "date": approved_on},
                criteria=programme_criteria(index),
                high=Decimal("0.8"),
                medium=Decimal("0.5"),
            )
            changed += [programme, ProgrammeCode.claim(code, programme.id)]
            programmes.append(programme)
    app.save(*changed)
    return programmes


def _half(plan: list[tuple[date, str]], first: bool) -> list[tuple[date, str]]:
    middle = len(plan) // 2
    return plan[:middle] if first else plan[middle:]


def first_working_day(day: date) -> date:
    """Return `day`, or the Monday after it when it falls on a weekend."""
    while day.weekday() >= 5:
        day += timedelta(days=1)
    return day


def _session_days(
    year_start: date, year_end: date, count: int, rng: random.Random
) -> list[tuple[date, str]]:
    """Return `count` sessions on two weekdays a week, from the second week on."""
    weekdays = sorted(rng.sample(range(5), 2))
    start_time = rng.choice(SESSION_TIMES)
    days: list[tuple[date, str]] = []
    day = year_start + timedelta(days=7)
    while len(days) < count and day <= year_end - timedelta(days=3):
        if day.weekday() in weekdays:
            days.append((day, start_time))
        day += timedelta(days=1)
    return days


class LogBuilder:
    """Grows one records store to given sizes with generator processes in parallel.

    `steps` is how many times `grow_to` will add events; the processes of each
    step draw pupils from their own partition, so identities never collide.
    """

    def __init__(
        self, settings: Settings, *, seed: int, workers: int, steps: int
    ) -> None:
        self.settings = settings
        self.seed = seed
        self.workers = max(1, workers)
        self.steps = steps
        self.pupil_ids: list[UUID] = []
        self._programme_ids: list[UUID] = []
        self._step = 0

    def grow_to(self, events: int) -> int:
        """Add events until the log contains at least `events`; return the head."""
        missing = events - self._prepare()
        if missing > 0:
            if self._step >= self.steps:
                raise RuntimeError(f"the builder was made for {self.steps} steps")
            self._run_workers(missing)
            self._step += 1
        return self.head()

    def _prepare(self) -> int:
        app = open_records(self.settings)
        try:
            if not self._programme_ids:
                self._programme_ids = [p.id for p in approve_programmes(app)]
            return app.head_position()
        finally:
            app.close()

    def head(self) -> int:
        """Return the position of the newest event in the log (0 when empty)."""
        app = open_records(self.settings)
        try:
            return app.head_position()
        finally:
            app.close()

    def _run_workers(self, missing: int) -> None:
        shares = [missing // self.workers] * self.workers
        shares[0] += missing - sum(shares)
        slots = self.steps * self.workers
        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(self.workers, mp_context=context) as pool:
            futures = [
                pool.submit(
                    _grow_in_process,
                    self.settings.with_env(),
                    [str(i) for i in self._programme_ids],
                    share,
                    self.seed + 7919 * (self._step * self.workers + worker),
                    (self._step * self.workers + worker, slots),
                )
                for worker, share in enumerate(shares)
            ]
            for future in futures:
                self.pupil_ids.extend(UUID(text) for text in future.result())


def open_records(settings: Settings) -> RecordsApplication:
    """Open the records application of `settings` with their master key."""
    return RecordsApplication(
        settings.records_database_url, master_key=load_master_key(settings)
    )


def _grow_in_process(
    env: dict[str, str],
    programme_ids: list[str],
    events: int,
    seed: int,
    partition: tuple[int, int],
) -> list[str]:
    settings = Settings.from_env(environ=env)
    app = open_records(settings)
    try:
        programmes = [app.repository.get(UUID(text)) for text in programme_ids]
        generator = LogGenerator(app, programmes, seed=seed, partition=partition)
        generator.grow_by(events)
        return [str(pupil_id) for pupil_id in generator.pupil_ids]
    finally:
        app.close()
