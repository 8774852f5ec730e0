"""The demo centre's history: who was enrolled where, from when to when, and why.

Pure and deterministic: everything is drawn from one `random.Random`. The
history is decided year by year, so that every enrolment, transfer, expulsion
and re-admission respects the records service's rules when replayed in date
order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import date, timedelta

from services.demo.calendar import (
    AcademicYear,
    academic_years,
    current_start_year,
    next_working_day,
    previous_working_day,
    working_days_between,
)
from services.demo.catalogue import (
    MEN_NAMES,
    PROGRAMMES,
    PSYCHOLOGIST,
    STAFF_POSITIONS,
    WOMEN_NAMES,
    ProgrammeSpec,
)
from services.demo.names import FullName, random_full_name
from services.records.domain.names import normalised_full_name

# Programmes in the order they open when the demo is scaled down, so that even a
# small centre has a group and an individual programme for overlapping ages.
PROGRAMME_PRIORITY = (
    "ПСИ-02", "ЛОГ-04", "ЛОГ-01", "ПСИ-01", "ДЕФ-01", "ПСИ-03", "ЛОГ-02",
    "ЛОГ-03", "ПСИ-05", "ДЕФ-02", "ПСИ-04", "СОЦ-01", "СОЦ-02",
)  # fmt: skip

# Programmes that get a second journal first when there are spare journals: the
# individual courses with the largest caseloads, shared by two specialists, then
# second groups.
SECOND_JOURNAL_PRIORITY = ("ЛОГ-01", "ЛОГ-04", "ПСИ-02", "ЛОГ-02", "ДЕФ-02", "ПСИ-03")

EARLY_GROUNDS = ("parents_request", "transfer", "circumstances", "other")
EARLY_GROUND_WEIGHTS = (60, 20, 10, 10)

OTHER_GROUND_DETAILS = (
    "Длительное лечение в стационаре за пределами города",
    "Зачислен в группу компенсирующей направленности детского сада",
    "Получает коррекционную помощь по месту обучения",
    "Рекомендация ПМПК о смене образовательного маршрута",
)

LEAP_DAY = date(2024, 2, 29)

# New pupils admitted in the first year relative to a later year: the centre
# opens with every place free, later years only fill the places that came free.
FIRST_YEAR_INTAKE = 2.4


@dataclass(frozen=True)
class Sizes:
    """Target sizes of the demo centre; `scaled` shrinks them for quick loads."""

    pupils: int = 300
    journals: int = 60
    sessions: int = 12_000
    expulsions: int = 250
    transfers: int = 12
    readmissions_in_year: int = 4
    cancelled_expulsions: int = 3
    new_pupil_second_programme: float = 0.8
    returning_share: float = 0.12
    added_programme_share: float = 0.12
    early_leave_share: float = 0.03

    @classmethod
    def scaled(cls, scale: float) -> Sizes:
        """Return the sizes multiplied by `scale`, keeping every case at least once."""
        if not 0 < scale <= 1:
            raise ValueError(f"scale must be in (0, 1], got {scale}")
        full = cls()
        return cls(
            pupils=max(12, round(full.pupils * scale)),
            journals=max(1, round(full.journals * scale)),
            sessions=max(1, round(full.sessions * scale)),
            expulsions=max(6, round(full.expulsions * scale)),
            transfers=max(1, round(full.transfers * scale)),
            readmissions_in_year=max(1, round(full.readmissions_in_year * scale)),
            cancelled_expulsions=max(1, round(full.cancelled_expulsions * scale)),
        )


@dataclass(frozen=True)
class Specialist:
    """A specialist of the centre who keeps session journals."""

    name: FullName
    position: str


@dataclass
class Pupil:
    """A child of the demo centre, with traits that shape attendance and scores."""

    key: str
    name: FullName
    birth_date: date
    ability: float
    frailty: float
    truancy: float
    keep_closed: bool = False  # the leaving stays as planned: no later enrolment
    registered_on: date | None = None  # the day the personal file was opened

    def age_on(self, day: date) -> int:
        """Return the pupil's age in full years on `day`."""
        before_birthday = (day.month, day.day) < (
            self.birth_date.month,
            self.birth_date.day,
        )
        return day.year - self.birth_date.year - before_birthday


@dataclass
class CancelledExpulsion:
    """An expulsion order that a later order voided; the enrolment went on."""

    key: str
    effective: date
    order_date: date
    ground: str
    cancel_order_date: date


@dataclass
class Enrolment:
    """One enrolment order of a pupil in a programme, and how it ended."""

    key: str
    pupil: Pupil
    programme: ProgrammeSpec
    effective: date
    order_date: date
    completes_in: int  # start year of the academic year whose end completes it
    transferred_from: Enrolment | None = None
    last_day: date | None = None
    ground: str | None = None  # expulsion ground, or None while active
    ground_detail: str | None = None
    expulsion_order_date: date | None = None
    transferred_to: Enrolment | None = None
    cancel_order_date: date | None = None  # the order voiding a mistaken enrolment
    cancelled_expulsions: list[CancelledExpulsion] = field(default_factory=list)
    journals: dict[int, Journal] = field(default_factory=dict)

    @property
    def expelled(self) -> bool:
        return self.ground is not None

    @property
    def cancelled(self) -> bool:
        return self.cancel_order_date is not None

    def active_on(self, day: date) -> bool:
        """Tell whether the pupil is enrolled under this enrolment on `day`."""
        if self.cancelled or day < self.effective:
            return False
        return self.last_day is None or day <= self.last_day

    def attends_on(self, day: date) -> bool:
        """Tell whether the pupil comes to sessions on `day`.

        While an expulsion order is in force, until the order voiding it, the
        pupil does not come, although the voided order leaves them enrolled.
        """
        if not self.active_on(day):
            return False
        return not any(
            cancelled.effective < day <= cancelled.cancel_order_date
            for cancelled in self.cancelled_expulsions
        )

    def span_in(self, year: AcademicYear, today: date) -> tuple[date, date] | None:
        """Return the first and last day enrolled inside `year`, up to `today`."""
        first = max(self.effective, year.start)
        last = min(self.last_day or year.end, year.end, today)
        if self.cancelled or first > last:
            return None
        return first, last


@dataclass
class Journal:
    """A session journal of one specialist, programme, group and academic year."""

    key: str
    programme: ProgrammeSpec
    year: AcademicYear
    specialist: Specialist
    group: str | None
    members: list[Enrolment] = field(default_factory=list)

    @property
    def kind(self) -> str:
        return self.programme.kind


@dataclass
class History:
    """Everything the demo centre did, before it is turned into API commands."""

    today: date
    years: list[AcademicYear]
    pupils: list[Pupil]
    enrolments: list[Enrolment]
    journals: list[Journal]

    def enrolments_of(self, pupil: Pupil) -> list[Enrolment]:
        """List the pupil's enrolments in the order they were made."""
        return [e for e in self.enrolments if e.pupil is pupil]


class _Centre:
    """Decides the history step by step; `build` returns it."""

    def __init__(self, today: date, rng: random.Random, sizes: Sizes) -> None:
        self.today = today
        self.rng = rng
        self.sizes = sizes
        self.years = academic_years(today)
        self.specialists = _hire_specialists(rng)
        self.running = _running_programmes(sizes.journals, len(self.years))
        self.pupils: list[Pupil] = []
        self.enrolments: list[Enrolment] = []
        self.journals: list[Journal] = []
        self._names: set[tuple[str, date]] = set()
        self._waiting: list[Pupil] = []
        self._keys: dict[str, int] = {}

    def build(self) -> History:
        weights = [FIRST_YEAR_INTAKE] + [1.0] * (len(self.years) - 1)
        quotas = _split(self.sizes.pupils, weights)
        spare = _split_evenly(
            self.sizes.journals - len(self.running) * len(self.years), len(self.years)
        )
        transfers = _split_evenly(self.sizes.transfers, len(self.years))
        readmissions = _split_evenly(self.sizes.readmissions_in_year, len(self.years))
        for index, year in enumerate(self.years):
            self._open_journals(year, spare[index])
            self._admit(year, quotas[index])
            self._transfer(year, transfers[index])
            self._leave_early(year)
            self._readmit_in_year(year, readmissions[index])
            self._complete(year)
        self._leave_on_special_dates()
        self._match_expulsion_count()
        self._vary_grounds()
        self._cancel_expulsions()
        self._cancel_one_enrolment()
        self._date_waiting_births()
        self._date_registrations()
        self._assign_journals()
        return History(
            today=self.today,
            years=self.years,
            pupils=self.pupils,
            enrolments=self.enrolments,
            journals=self.journals,
        )

    # Keys and small helpers

    def _key(self, prefix: str) -> str:
        self._keys[prefix] = self._keys.get(prefix, 0) + 1
        return f"{prefix}-{self._keys[prefix]:04d}"

    def _days(self, first: date, last: date) -> list[date]:
        """List working days in [first, last] that are usable for any order."""
        last = min(last, self.today - timedelta(days=1))
        return [day for day in working_days_between(first, last) if day != LEAP_DAY]

    def _term_days(self, first: date, last: date) -> list[date]:
        """List usable days in [first, last] at least two weeks inside a term."""
        margin = timedelta(days=14)
        return [
            day
            for day in self._days(first, last)
            if any(y.start + margin <= day <= y.end - margin for y in self.years)
        ]

    def enrolments_of(self, pupil: Pupil) -> list[Enrolment]:
        return [e for e in self.enrolments if e.pupil is pupil]

    def _active(self, day: date) -> list[Enrolment]:
        return [e for e in self.enrolments if e.active_on(day)]

    def _pupil_active_on(self, pupil: Pupil, day: date) -> list[Enrolment]:
        return [e for e in self.enrolments if e.pupil is pupil and e.active_on(day)]

    def _may_start(self, pupil: Pupil, programme: ProgrammeSpec, day: date) -> bool:
        """Tell whether a new enrolment of `pupil` in `programme` may start on `day`."""
        for enrolment in self.enrolments:
            if enrolment.pupil is not pupil or enrolment.cancelled:
                continue
            if enrolment.last_day is None or enrolment.last_day >= day:
                if enrolment.programme is programme:
                    return False
        return pupil.age_on(day) <= programme.max_age + 1

    # Journals

    def _open_journals(self, year: AcademicYear, spare: int) -> None:
        for programme in self.running:
            self._open_journal(programme, year, "Группа 1")
        seconds = [p for p in SECOND_JOURNAL_PRIORITY if _spec(p) in self.running]
        seconds += [p.code for p in self.running if p.code not in seconds]
        for index in range(spare):
            programme = _spec(seconds[index % len(seconds)])
            number = 2 + index // len(seconds)
            self._open_journal(programme, year, f"Группа {number}")

    def _open_journal(
        self, programme: ProgrammeSpec, year: AcademicYear, group: str
    ) -> None:
        load = {
            specialist: sum(
                1
                for j in self.journals
                if j.year == year and j.specialist == specialist
            )
            for specialist in self.specialists
            if specialist.position == programme.position
        }
        specialist = min(load, key=lambda s: (load[s], self.specialists.index(s)))
        self.journals.append(
            Journal(
                key=self._key("journal"),
                programme=programme,
                year=year,
                specialist=specialist,
                group=group if programme.kind == "group" else None,
            )
        )

    # Admissions

    def _admit(self, year: AcademicYear, new_pupils: int) -> None:
        september = self._september_dates(year)
        if year != self.years[0] and september:
            self._place_waiting(september)
            self._return_pupils(september)
            self._add_programmes(year, september)
        in_september = round(new_pupils * 0.75) if september else 0
        for _ in range(in_september):
            self._admit_new_pupil(self.rng.choice(september))
        later = self._days(
            next_working_day(date(year.start_year, 10, 1)),
            date(year.start_year + 1, 2, 28),
        )
        for _ in range(new_pupils - in_september):
            day = self.rng.choice(later) if later else None
            self._admit_new_pupil(day)

    def _september_dates(self, year: AcademicYear) -> list[date]:
        """Return effective dates of the September orders, weighted by repetition."""
        first = next_working_day(year.start)
        second = next_working_day(year.start + timedelta(days=10))
        third = next_working_day(year.start + timedelta(days=17))
        dates = [first] * 6 + [second] * 3 + [third]
        return [day for day in dates if day < self.today]

    def _admit_new_pupil(self, day: date | None) -> None:
        programme = self._choose(self.running, day) if day else None
        if day is None or programme is None:
            # The centre is full, or no order date is left before today: the pupil
            # is registered and waits for a place.
            wanted = self.rng.choice(self.running)
            self._waiting.append(self._new_pupil(wanted, day or self.today))
            return
        pupil = self._new_pupil(programme, day)
        self._enrol(pupil, programme, day)
        if self.rng.random() < self.sizes.new_pupil_second_programme:
            second = self._choose(self._other_options(pupil, programme, day), day)
            if second is not None:
                self._enrol(pupil, second, day)

    def _other_options(
        self, pupil: Pupil, first: ProgrammeSpec, day: date
    ) -> list[ProgrammeSpec]:
        """List programmes of other specialists that suit the pupil's age."""
        done = {e.programme.code for e in self.enrolments if e.pupil is pupil}
        return [
            p
            for p in self.running
            if p.position != first.position
            and p.code not in done
            and p.min_age <= pupil.age_on(day) <= p.max_age
            and self._may_start(pupil, p, day)
        ]

    def _choose(self, options: list[ProgrammeSpec], day: date) -> ProgrammeSpec | None:
        """Pick a programme with weights by its free places on `day`, if any."""
        free = [max(0, self._free_places(p, day)) for p in options]
        if not any(free):
            return None
        return self.rng.choices(options, free)[0]

    def _free_places(self, programme: ProgrammeSpec, day: date) -> int:
        year = current_start_year(day)
        journals = sum(
            1
            for j in self.journals
            if j.year.start_year == year and j.programme is programme
        )
        taken = sum(
            1 for e in self.enrolments if e.programme is programme and e.active_on(day)
        )
        return programme.places * journals - taken

    def _new_pupil(self, programme: ProgrammeSpec, day: date) -> Pupil:
        female = self.rng.random() < 0.42
        while True:
            name = random_full_name(self.rng, female=female)
            # A long programme is started young enough to finish it in its age range.
            oldest = max(programme.min_age, programme.max_age - programme.years + 2)
            age = self.rng.randint(programme.min_age, oldest)
            birth = day - timedelta(days=365 * age + self.rng.randint(10, 360))
            identity = _identity(name, birth)
            if identity not in self._names:
                break
        self._names.add(identity)
        pupil = Pupil(
            key=self._key("pupil"),
            name=name,
            birth_date=birth,
            ability=self.rng.betavariate(5, 3),
            frailty=self.rng.uniform(0.5, 1.6),
            truancy=self.rng.uniform(0.3, 1.2) * (1.8 if age >= 12 else 1.0),
        )
        self.pupils.append(pupil)
        return pupil

    def _enrol(
        self,
        pupil: Pupil,
        programme: ProgrammeSpec,
        day: date,
        *,
        completes_in: int | None = None,
    ) -> Enrolment:
        enrolment = Enrolment(
            key=self._key("enrolment"),
            pupil=pupil,
            programme=programme,
            effective=day,
            order_date=previous_working_day(day - timedelta(days=3)),
            completes_in=completes_in or current_start_year(day) + programme.years - 1,
        )
        self.enrolments.append(enrolment)
        return enrolment

    def _place_waiting(self, september: list[date]) -> None:
        """Enrol pupils from the waiting list first when a new year starts."""
        for pupil in list(self._waiting):
            day = self.rng.choice(september)
            options = [
                p for p in self.running if p.min_age <= pupil.age_on(day) <= p.max_age
            ]
            programme = self._choose(options, day)
            if programme is not None:
                self._enrol(pupil, programme, day)
                self._waiting.remove(pupil)

    def _date_waiting_births(self) -> None:
        """Give pupils still waiting an age that suits a programme today.

        They applied recently: their files open in the last days before today.
        """
        for pupil in self._waiting:
            self._names.discard(_identity(pupil.name, pupil.birth_date))
            programme = self.rng.choice(self.running)
            while True:
                age = self.rng.randint(programme.min_age, programme.max_age)
                birth = self.today - timedelta(
                    days=365 * age + self.rng.randint(10, 360)
                )
                if _identity(pupil.name, birth) not in self._names:
                    break
            pupil.birth_date = birth
            self._names.add(_identity(pupil.name, birth))

    def _date_registrations(self) -> None:
        """Open each personal file a few days before the first enrolment order."""
        for pupil in self.pupils:
            orders = [e.order_date for e in self.enrolments if e.pupil is pupil]
            before = min(orders, default=self.today)
            back = timedelta(days=self.rng.randint(1, 10))
            pupil.registered_on = previous_working_day(before - back)

    def _return_pupils(self, september: list[date]) -> None:
        """Re-admit some pupils who left the centre before this year."""
        for pupil in self.pupils:
            mine = [e for e in self.enrolments if e.pupil is pupil]
            if pupil.keep_closed or not mine or any(e.last_day is None for e in mine):
                continue
            if self.rng.random() >= self.sizes.returning_share:
                continue
            day = self.rng.choice(september)
            done = {e.programme.code for e in mine}
            options = [
                p
                for p in self.running
                if p.code not in done and p.min_age <= pupil.age_on(day) <= p.max_age
            ]
            programme = self._choose(options, day)
            if programme is not None:
                self._enrol(pupil, programme, day)

    def _add_programmes(self, year: AcademicYear, september: list[date]) -> None:
        """Enrol some pupils who go on in one programme in a second one."""
        for pupil in self.pupils:
            current = self._pupil_active_on(pupil, year.start)
            if len(current) != 1:
                continue
            if self.rng.random() >= self.sizes.added_programme_share:
                continue
            day = self.rng.choice(september)
            options = self._other_options(pupil, current[0].programme, day)
            programme = self._choose(options, day)
            if programme is not None:
                self._enrol(pupil, programme, day)

    # Changes during the year

    def _transfer(self, year: AcademicYear, count: int) -> None:
        """Move `count` pupils from one programme to another in the middle of a year."""
        window = self._days(
            date(year.start_year, 10, 15), date(year.start_year + 1, 3, 31)
        )
        attempts = 0
        while count > 0 and window and attempts < 200:
            attempts += 1
            day = self.rng.choice(window)
            candidates = [
                e
                for e in self._active(day)
                if e.effective <= day - timedelta(days=30) and not e.pupil.keep_closed
            ]
            if not candidates:
                continue
            old = self.rng.choice(candidates)
            target = self._transfer_target(old, day)
            if target is None:
                continue
            old.last_day = day - timedelta(days=1)
            new = self._enrol(old.pupil, target, day)
            new.transferred_from = old
            old.transferred_to = new
            count -= 1

    def _transfer_target(self, old: Enrolment, day: date) -> ProgrammeSpec | None:
        age = old.pupil.age_on(day)
        options = [
            p
            for p in self.running
            if p is not old.programme
            and p.min_age <= age <= p.max_age
            and self._may_start(old.pupil, p, day)
        ]
        same_position = [p for p in options if p.position == old.programme.position]
        chosen = self._choose(same_position, day) or self._choose(options, day)
        if chosen is None and options:
            # A transfer frees a place as well: the director may exceed the other
            # programme's places by one pupil for a while.
            chosen = self.rng.choice(options)
        return chosen

    def _leave_early(self, year: AcademicYear) -> None:
        """End some enrolments before their programme is complete."""
        window_end = date(year.start_year + 1, 5, 15)
        for enrolment in list(self.enrolments):
            span = enrolment.span_in(year, self.today)
            if span is None or enrolment.last_day is not None:
                continue
            if self.rng.random() >= self.sizes.early_leave_share:
                continue
            days = self._days(span[0] + timedelta(days=21), window_end)
            if days:
                self._expel_early(enrolment, self.rng.choice(days))

    def _expel_early(
        self, enrolment: Enrolment, day: date, ground: str | None = None
    ) -> None:
        ground = ground or self.rng.choices(EARLY_GROUNDS, EARLY_GROUND_WEIGHTS)[0]
        enrolment.last_day = day
        enrolment.ground = ground
        enrolment.ground_detail = (
            self.rng.choice(OTHER_GROUND_DETAILS) if ground == "other" else None
        )
        enrolment.expulsion_order_date = previous_working_day(
            day - timedelta(days=self.rng.randint(0, 3))
        )

    def _readmit_in_year(self, year: AcademicYear, count: int) -> None:
        """Re-admit pupils who left on their parents' request earlier this year."""
        latest = min(date(year.start_year + 1, 4, 30), self.today - timedelta(days=20))
        candidates = [
            e
            for e in self.enrolments
            if e.ground == "parents_request"
            and e.last_day is not None
            and year.start <= e.last_day <= latest - timedelta(days=30)
            and not e.pupil.keep_closed
            and not self._pupil_active_on(e.pupil, e.last_day + timedelta(days=1))
            and not any(
                other.effective > e.last_day
                for other in self.enrolments
                if other.pupil is e.pupil
            )
        ]
        for left in self.rng.sample(candidates, min(count, len(candidates))):
            assert left.last_day is not None
            days = self._days(left.last_day + timedelta(days=30), latest)
            if days:
                self._enrol(
                    left.pupil, left.programme, days[0], completes_in=left.completes_in
                )

    def _complete(self, year: AcademicYear) -> None:
        """Expel, as having completed it, everyone whose programme ends this year."""
        if year.end > self.today:
            return
        for enrolment in self.enrolments:
            if enrolment.cancelled or enrolment.last_day is not None:
                continue
            if enrolment.completes_in == year.start_year:
                enrolment.last_day = year.end
                enrolment.ground = "completed"
                enrolment.expulsion_order_date = previous_working_day(
                    year.end - timedelta(days=self.rng.randint(2, 5))
                )

    # Cases chosen on purpose

    def _leave_on_special_dates(self) -> None:
        """Add the leap-day leaving and the 31 December leaving signed in January."""
        if LEAP_DAY < self.today:
            self._leave_specially(
                LEAP_DAY, previous_working_day(LEAP_DAY - timedelta(2))
            )
        for year in reversed(self.years):
            new_year_eve = date(year.start_year, 12, 31)
            signed = next_working_day(date(year.start_year + 1, 1, 9))
            signed += timedelta(days=self.rng.randint(0, 3))
            signed = next_working_day(signed)
            if signed < self.today:
                self._leave_specially(new_year_eve, signed)
                return

    def _leave_specially(self, day: date, signed: date) -> None:
        candidates = [
            e
            for e in self._active(day)
            if e.effective <= day - timedelta(days=30)
            and e.transferred_from is None
            and not e.cancelled_expulsions
            and self._pupil_active_on(e.pupil, day) == [e]
            and not any(
                other.effective > day
                for other in self.enrolments
                if other.pupil is e.pupil
            )
        ]
        if not candidates:
            return
        enrolment = self.rng.choice(candidates)
        enrolment.last_day = day
        enrolment.ground = "parents_request"
        enrolment.ground_detail = None
        enrolment.expulsion_order_date = signed
        enrolment.pupil.keep_closed = True

    def _match_expulsion_count(self) -> None:
        """Add early leavings, or undo some, until the expulsions reach their count.

        At most a tenth of the enrolments still running may be ended early, so
        that a centre only weeks old does not lose most of its pupils at once.
        """
        target = self.sizes.expulsions - self.sizes.cancelled_expulsions
        count = sum(1 for e in self.enrolments if e.expelled)
        candidates = [
            e
            for e in self.enrolments
            if e.last_day is None and not e.cancelled and not e.pupil.keep_closed
        ]
        self.rng.shuffle(candidates)
        target = min(target, count + len(candidates) // 10)
        for enrolment in candidates:
            if count >= target:
                break
            days = self._term_days(enrolment.effective + timedelta(days=21), self.today)
            if days:
                self._expel_early(enrolment, self.rng.choice(days))
                count += 1
        undoable = self._undoable_leavings()
        for enrolment in undoable[: max(0, count - target)]:
            enrolment.last_day = enrolment.ground = enrolment.ground_detail = None
            enrolment.expulsion_order_date = None
            enrolment.completes_in = max(
                enrolment.completes_in, self.years[-1].start_year
            )

    def _undoable_leavings(self) -> list[Enrolment]:
        """List leavings that may be undone so that the enrolment goes on to today.

        First early leavings from programmes not complete yet, then completions
        at the end of last year, taken as the programme extended by a year.
        """
        current = self.years[-1]
        if current.end < self.today:
            return []

        def undoable(e: Enrolment) -> bool:
            return (
                e.last_day is not None
                and not e.pupil.keep_closed
                and not any(
                    other.effective > e.last_day
                    for other in self.enrolments
                    if other.pupil is e.pupil and other.programme is e.programme
                )
            )

        early = [
            e
            for e in self.enrolments
            if e.ground in EARLY_GROUNDS
            and e.completes_in >= current.start_year
            and undoable(e)
        ]
        extended = [
            e
            for e in self.enrolments
            if e.ground == "completed"
            and e.completes_in == current.start_year - 1
            and undoable(e)
        ]
        self.rng.shuffle(early)
        self.rng.shuffle(extended)
        return early + extended

    def _vary_grounds(self) -> None:
        """Make sure the rarer grounds of an early leaving each occur a few times."""
        minimum = {
            "transfer": max(1, round(self.sizes.expulsions * 0.02)),
            "circumstances": max(1, round(self.sizes.expulsions * 0.01)),
            "other": max(1, round(self.sizes.expulsions * 0.01)),
        }
        for ground, wanted in minimum.items():
            missing = wanted - sum(1 for e in self.enrolments if e.ground == ground)
            requests = [
                e
                for e in self.enrolments
                if e.ground == "parents_request" and not e.pupil.keep_closed
            ]
            for enrolment in self.rng.sample(
                requests, max(0, min(missing, len(requests) - 1))
            ):
                enrolment.ground = ground
                if ground == "other":
                    enrolment.ground_detail = self.rng.choice(OTHER_GROUND_DETAILS)

    def _cancel_expulsions(self) -> None:
        """Add expulsion orders that a later order voided."""
        count = self.sizes.cancelled_expulsions
        attempts = 0
        while count > 0 and attempts < 500 and self.enrolments:
            attempts += 1
            enrolment = self.rng.choice(self.enrolments)
            window = self._cancellable_window(enrolment)
            if not window:
                continue
            day = self.rng.choice(window)
            cancel = next_working_day(day + timedelta(days=self.rng.randint(3, 8)))
            enrolment.cancelled_expulsions.append(
                CancelledExpulsion(
                    key=self._key("expulsion"),
                    effective=day,
                    order_date=previous_working_day(day - timedelta(days=1)),
                    ground=self.rng.choice(("parents_request", "other")),
                    cancel_order_date=cancel,
                )
            )
            count -= 1

    def _cancellable_window(self, enrolment: Enrolment) -> list[date]:
        if enrolment.cancelled or enrolment.cancelled_expulsions:
            return []
        if enrolment.pupil.keep_closed:
            return []
        end = (enrolment.last_day or self.today) - timedelta(days=30)
        return [
            day
            for day in self._days(enrolment.effective + timedelta(days=21), end)
            if day.month in (10, 11, 2, 3, 4)
        ]

    def _cancel_one_enrolment(self) -> None:
        """Re-admit one pupil who left by a mistaken order, then void that order."""
        left = [
            p
            for p in self.pupils
            if not p.keep_closed
            and (mine := [e for e in self.enrolments if e.pupil is p])
            and all(e.last_day is not None for e in mine)
        ]
        self.rng.shuffle(left)
        for pupil in left:
            last = max(e.last_day for e in self.enrolments_of(pupil) if e.last_day)
            days = [
                day
                for day in self._term_days(last + timedelta(days=14), self.today)
                if day <= last + timedelta(days=120)
            ]
            if not days:
                continue
            day = days[0]
            cancel = next_working_day(day + timedelta(days=self.rng.randint(3, 7)))
            if cancel >= self.today:
                continue
            options = [
                p for p in self.running if p.min_age <= pupil.age_on(day) <= p.max_age
            ]
            # The order was a mistake: it may even name a programme for other ages.
            programme = self.rng.choice(options or self.running)
            enrolment = self._enrol(pupil, programme, day)
            enrolment.cancel_order_date = cancel
            pupil.keep_closed = True
            return

    # Journals' members

    def _assign_journals(self) -> None:
        """Assign each enrolment, in every year it spans, to a programme journal."""
        for year in self.years:
            spans = [
                (span, e)
                for e in self.enrolments
                if (span := e.span_in(year, self.today)) is not None
            ]
            for _span, enrolment in sorted(spans, key=lambda item: item[0][0]):
                options = [
                    j
                    for j in self.journals
                    if j.year == year and j.programme is enrolment.programme
                ]
                journal = min(options, key=lambda j: len(j.members))
                journal.members.append(enrolment)
                enrolment.journals[year.start_year] = journal


def build_history(today: date, rng: random.Random, sizes: Sizes) -> History:
    """Decide the demo centre's whole history up to `today`."""
    return _Centre(today, rng, sizes).build()


def _identity(name: FullName, birth: date) -> tuple[str, date]:
    # The records service's own duplicate key, so that no two demo pupils clash.
    return normalised_full_name(name.surname, name.name, name.patronymic), birth


def _spec(code: str) -> ProgrammeSpec:
    return next(p for p in PROGRAMMES if p.code == code)


def _running_programmes(journals: int, years: int) -> list[ProgrammeSpec]:
    """Return the programmes that run every year given the journals per year."""
    count = max(2, min(len(PROGRAMMES), journals // years))
    return [_spec(code) for code in PROGRAMME_PRIORITY[:count]]


def _split(total: int, weights: list[float]) -> list[int]:
    """Split `total` into integer shares proportional to `weights`."""
    scale = sum(weights)
    shares = [int(total * weight / scale) for weight in weights]
    for index in range(total - sum(shares)):
        shares[index % len(shares)] += 1
    return shares


def _split_evenly(total: int, parts: int) -> list[int]:
    return _split(max(0, total), [1.0] * parts)


def _hire_specialists(rng: random.Random) -> list[Specialist]:
    specialists = []
    for index, position in enumerate(STAFF_POSITIONS):
        male = position == PSYCHOLOGIST and index == 2
        name = random_full_name(
            rng, female=not male, first_names=MEN_NAMES if male else WOMEN_NAMES
        )
        specialists.append(Specialist(name=name, position=position))
    return specialists
