"""Sessions, attendance and attestations of the demo centre's journals."""

from __future__ import annotations

import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta

from services.demo.calendar import (
    AcademicYear,
    current_start_year,
    next_working_day,
    previous_working_day,
    working_days_between,
)
from services.demo.history import Enrolment, History, Journal, Pupil, Specialist

MORNING = ("09:00", "09:45", "10:30", "11:15", "12:00")
AFTERNOON = ("14:00", "14:45", "15:30", "16:15", "17:00", "17:45")
# Weekdays of sessions held twice or three times a week, with days of rest between.
WEEKDAY_SETS = {
    2: ((0, 2), (0, 3), (1, 3), (1, 4), (2, 4)),
    3: ((0, 2, 4), (0, 1, 3), (1, 3, 4)),
}

# Chance per week that a pupil of average health falls ill, by month: colds and
# flu peak from December to February.
ILLNESS_ONSET = {9: 0.02, 10: 0.04, 11: 0.06, 12: 0.07, 1: 0.08, 2: 0.09}
ILLNESS_ONSET_REST = 0.03

Slot = tuple[int, str]  # weekday (Monday is 0) and start time


@dataclass(frozen=True)
class Session:
    """One session entry: a date, a start time and the attendance of its pupils."""

    journal: Journal
    day: date
    start_time: str
    topic: str
    attendance: tuple[tuple[Pupil, str], ...]


@dataclass(frozen=True)
class Attestation:
    """One pupil's attestation result under a protocol of the commission."""

    enrolment: Enrolment
    kind: str
    day: date
    scores: dict[str, int]
    protocol_number: str


@dataclass
class Timetable:
    """The journals' contents: sessions, attestations and closure dates."""

    sessions: list[Session] = field(default_factory=list)
    attestations: list[Attestation] = field(default_factory=list)
    closures: dict[str, date] = field(default_factory=dict)  # journal key → date


class _SlotBook:
    """Weekly slots of each specialist in each year, booked for date intervals."""

    def __init__(self) -> None:
        self._booked: dict[tuple[Specialist, int, Slot], list[tuple[date, date]]] = {}

    def is_free(
        self, specialist: Specialist, year: int, slot: Slot, first: date, last: date
    ) -> bool:
        intervals = self._booked.get((specialist, year, slot), [])
        return all(last < start or end < first for start, end in intervals)

    def book(
        self, specialist: Specialist, year: int, slot: Slot, first: date, last: date
    ) -> None:
        self._booked.setdefault((specialist, year, slot), []).append((first, last))


def build_timetable(history: History, rng: random.Random, sessions: int) -> Timetable:
    """Plan sessions and attestations before `history.today`; at most `sessions`."""
    book = _SlotBook()
    illness = _Illness(history, rng)
    timetable = Timetable()
    for journal in history.journals:
        timetable.sessions.extend(
            _journal_sessions(journal, history, book, rng, illness)
        )
    _drop_to(timetable.sessions, sessions, rng)
    timetable.attestations = _attestations(history, rng, illness)
    for journal in history.journals:
        if journal.year.end < history.today:
            timetable.closures[journal.key] = previous_working_day(journal.year.end)
    return timetable


def _times_for(age: int) -> tuple[str, ...]:
    # Preschoolers come in the morning, schoolchildren after their lessons.
    return MORNING if age <= 6 else AFTERNOON


def _weekday_sets(count: int, rng: random.Random) -> list[tuple[int, ...]]:
    sets = list(WEEKDAY_SETS.get(count, [(day,) for day in range(5)]))
    rng.shuffle(sets)
    return sets


def _book_slots(
    book: _SlotBook,
    journal: Journal,
    age: int,
    first: date,
    last: date,
    rng: random.Random,
) -> list[Slot]:
    """Book the programme's weekly slots for one group or one individual pupil."""
    specialist, year = journal.specialist, journal.year.start_year
    preferred = list(_times_for(age))
    rng.shuffle(preferred)
    others = [t for t in MORNING + AFTERNOON if t not in preferred]
    for count in range(journal.programme.sessions_per_week, 0, -1):
        for time in preferred + others:
            for weekdays in _weekday_sets(count, rng):
                slots = [(weekday, time) for weekday in weekdays]
                if all(book.is_free(specialist, year, s, first, last) for s in slots):
                    for slot in slots:
                        book.book(specialist, year, slot, first, last)
                    return slots
    return []


def _journal_sessions(
    journal: Journal,
    history: History,
    book: _SlotBook,
    rng: random.Random,
    illness: _Illness,
) -> list[Session]:
    year = journal.year
    days = [d for d in year.working_days(history.today) if d < history.today]
    if journal.kind == "group":
        age = journal.programme.min_age
        slots = _book_slots(book, journal, age, year.start, year.end, rng)
        return [
            session
            for day in days
            for weekday, time in slots
            if day.weekday() == weekday
            and (session := _session(journal, day, time, journal.members, illness, rng))
        ]
    sessions = []
    for enrolment in journal.members:
        span = enrolment.span_in(year, history.today)
        assert span is not None
        age = enrolment.pupil.age_on(span[0])
        slots = _book_slots(book, journal, age, span[0], span[1], rng)
        for day in days:
            for weekday, time in slots:
                if day.weekday() == weekday and span[0] <= day <= span[1]:
                    session = _session(journal, day, time, [enrolment], illness, rng)
                    if session is not None:
                        sessions.append(session)
    sessions.sort(key=lambda s: (s.day, s.start_time))
    return sessions


def _session(
    journal: Journal,
    day: date,
    time: str,
    members: list[Enrolment],
    illness: _Illness,
    rng: random.Random,
) -> Session | None:
    present = [e.pupil for e in members if e.attends_on(day)]
    if not present:
        return None
    attendance = tuple(
        (pupil, illness.status(pupil, day, rng))
        for pupil in sorted(present, key=lambda p: p.key)
    )
    return Session(journal, day, time, _topic(journal, day), attendance)


def _topic(journal: Journal, day: date) -> str:
    """Follow the programme's topic plan in step with the academic year."""
    topics = journal.programme.topics
    year = journal.year
    progress = (day - year.start).days / (year.end - year.start).days
    return topics[min(len(topics) - 1, int(progress * len(topics)))]


def _drop_to(sessions: list[Session], target: int, rng: random.Random) -> None:
    """Leave out whole days of a specialist (sick leave, courses) down to `target`."""
    surplus = len(sessions) - target
    if surplus <= 0:
        return
    by_day: dict[tuple[str, date], list[int]] = {}
    for index, session in enumerate(sessions):
        key = (str(session.journal.specialist.name), session.day)
        by_day.setdefault(key, []).append(index)
    absences = sorted(by_day)
    rng.shuffle(absences)
    dropped: set[int] = set()
    for key in absences:
        if len(by_day[key]) <= surplus - len(dropped):
            dropped.update(by_day[key])
        if len(dropped) == surplus:
            break
    remaining = [i for i in range(len(sessions)) if i not in dropped]
    dropped.update(rng.sample(remaining, surplus - len(dropped)))
    sessions[:] = [s for index, s in enumerate(sessions) if index not in dropped]


class _Illness:
    """Periods when each pupil is ill, and the attendance status on a given day."""

    def __init__(self, history: History, rng: random.Random) -> None:
        self._history = history
        self._rng = rng
        self._periods: dict[str, list[tuple[date, date]]] = {}

    def is_ill(self, pupil: Pupil, day: date) -> bool:
        periods = self._periods.get(pupil.key)
        if periods is None:
            periods = self._periods[pupil.key] = self._draw(pupil)
        return any(start <= day <= end for start, end in periods)

    def status(self, pupil: Pupil, day: date, rng: random.Random) -> str:
        """Return the pupil's attendance status at a session on `day`."""
        if self.is_ill(pupil, day):
            return "ill"
        draw = rng.random()
        if draw < 0.03 * pupil.truancy:
            return "absent"
        if draw < 0.03 * pupil.truancy + 0.025:
            return "excused"
        return "present"

    def _draw(self, pupil: Pupil) -> list[tuple[date, date]]:
        years = self._history.years
        week = years[0].start
        periods = []
        while week < self._history.today:
            onset = ILLNESS_ONSET.get(week.month, ILLNESS_ONSET_REST)
            if self._rng.random() < onset * pupil.frailty:
                start = week + timedelta(days=self._rng.randint(0, 4))
                periods.append(
                    (start, start + timedelta(days=self._rng.randint(5, 12)))
                )
            week += timedelta(days=7)
        return periods


def _attestation_days(year: AcademicYear, rng: random.Random) -> list[tuple[str, date]]:
    december = next_working_day(date(year.start_year, 12, rng.randint(16, 25)))
    may = next_working_day(date(year.start_year + 1, 5, rng.randint(13, 26)))
    return [("intermediate", december), ("final", may)]


def _attestations(
    history: History, rng: random.Random, illness: _Illness
) -> list[Attestation]:
    """Attest every pupil who attends on the commission's day and has had time to."""
    sittings = sorted(
        (day, journal.key, kind, journal)
        for journal in history.journals
        for kind, day in _attestation_days(journal.year, rng)
        if day < history.today
    )
    earlier: dict[tuple[str, str], int] = {}
    results = []
    for day, key, kind, journal in sittings:
        for enrolment in journal.members:
            if enrolment.effective > day - timedelta(days=21):
                continue  # too little time in the programme to assess
            held = _sitting_day(enrolment, day, illness, history.today)
            if held is None:
                continue
            pair = (enrolment.pupil.key, enrolment.programme.code)
            scores = _scores(enrolment, earlier.get(pair, 0), rng)
            earlier[pair] = earlier.get(pair, 0) + 1
            results.append((held, key, enrolment, kind, scores))
    numbers = _protocol_numbers((held, key) for held, key, *_ in results)
    return [
        Attestation(enrolment, kind, held, scores, numbers[held, key])
        for held, key, enrolment, kind, scores in results
    ]


def _sitting_day(
    enrolment: Enrolment, day: date, illness: _Illness, today: date
) -> date | None:
    """Return the commission's day, or a make-up day later that month after illness."""
    month_end = date(day.year, day.month, 28)
    while (month_end + timedelta(days=1)).month == day.month:
        month_end += timedelta(days=1)
    last = min(month_end, today - timedelta(days=1))
    for candidate in working_days_between(day, last):
        if not enrolment.attends_on(candidate):
            return None
        if not illness.is_ill(enrolment.pupil, candidate):
            return candidate
    return None


def _protocol_numbers(
    sittings: Iterable[tuple[date, str]],
) -> dict[tuple[date, str], str]:
    """Number the protocols, one per journal and day, afresh each academic year."""
    numbers: dict[tuple[date, str], str] = {}
    counters: dict[int, int] = {}
    for sitting in sorted(set(sittings)):
        year = current_start_year(sitting[0])
        counters[year] = counters.get(year, 0) + 1
        numbers[sitting] = str(counters[year])
    return numbers


def _scores(enrolment: Enrolment, earlier: int, rng: random.Random) -> dict[str, int]:
    """Draw scores that grow with each attestation in the same programme."""
    level = min(0.97, enrolment.pupil.ability + 0.07 * earlier + rng.gauss(0, 0.03))
    scores = {}
    for criterion in enrolment.programme.criteria:
        share = min(1.0, max(0.0, rng.gauss(level, 0.12)))
        scores[criterion.code] = round(share * criterion.max_score)
    return scores
