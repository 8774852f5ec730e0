"""Tests of the demo plan: determinism, sizes, dates and the records API's rules.

`Replay` is a model of the records service's rules as the public contract
states them. It applies the plan's commands in order and fails on the first
command that the service would reject, naming the step.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import pytest

from services.demo import build_plan
from services.demo.catalogue import ORIENTATION
from services.demo.model import Command, Plan, Ref, carried_dates
from services.demo.names import BOYS_NAMES, GIRLS_NAMES, SURNAMES, feminine_surname
from services.records.domain.names import normalised_full_name

TODAY = date(2026, 12, 4)

GROUNDS = {"completed", "parents_request", "transfer", "circumstances", "other"}
STATUSES = {"present", "absent", "ill", "excused"}


@dataclass
class Expulsion:
    key: str
    effective: date
    order_date: date
    ground: str
    cancelled: bool = False


@dataclass
class Enrolment:
    key: str
    programme: str
    effective: date
    order_date: date
    sequence: int
    by_transfer: bool = False
    status: str = "active"  # active, expelled, transferred, cancelled
    last_day: date | None = None
    has_records: bool = False
    readmission: bool = False
    expulsions: list[Expulsion] = field(default_factory=list)

    def covers(self, day: date) -> bool:
        if self.status == "cancelled" or day < self.effective:
            return False
        return self.last_day is None or day <= self.last_day


@dataclass
class Pupil:
    key: str
    opened_on: date
    enrolments: list[Enrolment] = field(default_factory=list)
    attestations: list[tuple[str, date, str]] = field(default_factory=list)

    @property
    def status(self) -> str:
        statuses = {e.status for e in self.enrolments}
        if "active" in statuses:
            return "enrolled"
        return "left" if "expelled" in statuses else "registered"

    def active(self, programme: str) -> Enrolment | None:
        for enrolment in self.enrolments:
            if enrolment.programme == programme and enrolment.status == "active":
                return enrolment
        return None

    def leaving(self) -> Expulsion | None:
        if self.status != "left":
            return None
        standing = [
            x
            for e in self.enrolments
            if e.status == "expelled"
            for x in e.expulsions
            if not x.cancelled
        ]
        return max(standing, key=lambda x: x.effective, default=None)


@dataclass
class Journal:
    programme: str
    start: date
    end: date
    slots: set[tuple[date, str]] = field(default_factory=set)
    last_session: date | None = None
    closed_on: date | None = None


class Replay:
    """Applies the plan's commands in order, checking each against the rules."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.created: set[str] = set()
        self.programmes: dict[str, dict[str, int]] = {}
        self.codes: set[str] = set()
        self.identities: set[tuple[str, date]] = set()
        self.pupils: dict[str, Pupil] = {}
        self.enrolments: dict[str, tuple[Pupil, Enrolment]] = {}
        self.expulsions: dict[str, tuple[Enrolment, Expulsion]] = {}
        self.journals: dict[str, Journal] = {}
        self.sequence = 0

    def run(self) -> Replay:
        for step, command in enumerate(self.plan, start=1):
            try:
                self.apply(command)
            except AssertionError as error:
                raise AssertionError(
                    f"step {step}, {command.describe()}: {error}"
                ) from None
        return self

    def apply(self, command: Command) -> None:
        self._check_refs(command)
        for day in carried_dates(command):
            assert day <= self.plan.today, f"{day} is after today"
        getattr(self, "_" + command.kind)(command, command.body)
        if command.creates is not None:
            assert command.creates not in self.created, "key created twice"
            self.created.add(command.creates)

    def _check_refs(self, command: Command) -> None:
        refs = list(command.params.values()) + _refs_in(command.body)
        for ref in refs:
            assert ref.key in self.created, f"{ref.key} is used before it exists"

    # Commands

    def _programme(self, command: Command, body: dict[str, Any]) -> None:
        assert body["code"] not in self.codes, "programme code reused"
        self.codes.add(body["code"])
        criteria = {c["code"]: c["max_score"] for c in body["criteria"]}
        assert len(criteria) == len(body["criteria"]), "criterion codes repeat"
        assert all(isinstance(m, int) and m >= 1 for m in criteria.values())
        levels = body["levels"]
        assert 0 <= levels["medium"] < levels["high"] <= 1, "levels out of order"
        self.programmes[command.creates or ""] = criteria

    def _pupil(self, command: Command, body: dict[str, Any]) -> None:
        identity = (
            normalised_full_name(body["surname"], body["name"], body["patronymic"]),
            date.fromisoformat(body["birth_date"]),
        )
        assert identity not in self.identities, "duplicate pupil"
        self.identities.add(identity)
        opened_on = date.fromisoformat(body["opened_on"])
        assert opened_on >= identity[1], "file opened before the birth"
        self.pupils[command.lane] = Pupil(command.lane, opened_on)

    def _new_enrolment(
        self, pupil: Pupil, key: str, programme: str, body: dict[str, Any]
    ) -> Enrolment:
        effective = date.fromisoformat(body["effective_date"])
        assert pupil.active(programme) is None, "already enrolled in the programme"
        for earlier in pupil.enrolments:
            if earlier.programme == programme and earlier.status != "cancelled":
                assert earlier.last_day is not None
                assert effective > earlier.last_day, "starts before the last one ends"
        self.sequence += 1
        enrolment = Enrolment(
            key=key,
            programme=programme,
            effective=effective,
            order_date=date.fromisoformat(body["order"]["date"]),
            sequence=self.sequence,
        )
        pupil.enrolments.append(enrolment)
        self.enrolments[key] = (pupil, enrolment)
        return enrolment

    def _enrolment(self, command: Command, body: dict[str, Any]) -> None:
        pupil = self.pupils[command.params["pupil"].key]
        leaving = pupil.leaving()
        effective = date.fromisoformat(body["effective_date"])
        if leaving is not None:
            assert effective > leaving.effective, "re-admission before the leaving"
        signed = date.fromisoformat(body["order"]["date"])
        assert pupil.opened_on <= signed <= effective, "order signed out of turn"
        enrolment = self._new_enrolment(
            pupil, command.creates or "", body["programme_id"].key, body
        )
        enrolment.readmission = leaving is not None

    def _transfer(self, command: Command, body: dict[str, Any]) -> None:
        pupil = self.pupils[command.params["pupil"].key]
        source = pupil.active(body["from_programme_id"].key)
        assert source is not None, "not enrolled in the programme to transfer from"
        effective = date.fromisoformat(body["effective_date"])
        assert effective > source.effective, "transfer before the enrolment"
        self._check_no_attestation_after(pupil, source, effective - timedelta(days=1))
        source.status, source.last_day = "transferred", effective - timedelta(days=1)
        target = self._new_enrolment(
            pupil, command.creates or "", body["to_programme_id"].key, body
        )
        target.by_transfer = True

    def _enrolment_cancellation(self, command: Command, body: dict[str, Any]) -> None:
        _pupil, enrolment = self.enrolments[command.params["enrolment"].key]
        assert enrolment.status == "active", "only an active enrolment is cancelled"
        assert not enrolment.by_transfer, "a transfer's enrolment cannot be cancelled"
        assert not enrolment.has_records, "something is recorded under it"
        assert date.fromisoformat(body["order"]["date"]) >= enrolment.order_date
        enrolment.status = "cancelled"

    def _expulsion(self, command: Command, body: dict[str, Any]) -> None:
        pupil = self.pupils[command.params["pupil"].key]
        enrolment = pupil.active(body["programme_id"].key)
        assert enrolment is not None, "not enrolled in the programme"
        effective = date.fromisoformat(body["effective_date"])
        assert effective >= enrolment.effective, "expelled before the enrolment"
        assert body["ground"] in GROUNDS
        if body["ground"] == "other":
            assert body.get("ground_detail"), "ground other without its detail"
        self._check_no_attestation_after(pupil, enrolment, effective)
        expulsion = Expulsion(
            key=command.creates or "",
            effective=effective,
            order_date=date.fromisoformat(body["order"]["date"]),
            ground=body["ground"],
        )
        enrolment.status, enrolment.last_day = "expelled", effective
        enrolment.expulsions.append(expulsion)
        self.expulsions[expulsion.key] = (enrolment, expulsion)

    def _expulsion_cancellation(self, command: Command, body: dict[str, Any]) -> None:
        pupil = self.pupils[command.params["pupil"].key]
        enrolment, expulsion = self.expulsions[command.params["expulsion"].key]
        assert not expulsion.cancelled, "already cancelled"
        later = [
            e
            for e in pupil.enrolments
            if e.programme == enrolment.programme
            and e.sequence > enrolment.sequence
            and e.status != "cancelled"
        ]
        assert not later, "enrolled in the programme again since"
        assert date.fromisoformat(body["order"]["date"]) >= expulsion.order_date
        expulsion.cancelled = True
        enrolment.status, enrolment.last_day = "active", None

    def _attestation(self, command: Command, body: dict[str, Any]) -> None:
        pupil = self.pupils[command.params["pupil"].key]
        programme = body["programme_id"].key
        day = date.fromisoformat(body["date"])
        covering = [
            e for e in pupil.enrolments if e.programme == programme and e.covers(day)
        ]
        assert covering, "attestation outside the enrolment"
        criteria = self.programmes[programme]
        assert set(body["scores"]) == set(criteria), "scores miss or add criteria"
        for code, score in body["scores"].items():
            assert isinstance(score, int) and 0 <= score <= criteria[code]
        assert body["kind"] in ("intermediate", "final")
        covering[0].has_records = True
        pupil.attestations.append((covering[0].key, day, body["kind"]))

    def _journal(self, command: Command, body: dict[str, Any]) -> None:
        year = body["academic_year"]
        self.journals[command.creates or ""] = Journal(
            programme=body["programme_id"].key,
            start=date.fromisoformat(year["start"]),
            end=date.fromisoformat(year["end"]),
        )

    def _session(self, command: Command, body: dict[str, Any]) -> None:
        journal = self.journals[command.params["journal"].key]
        day = date.fromisoformat(body["date"])
        assert journal.closed_on is None, "session in a closed journal"
        assert journal.start <= day <= journal.end, "outside the academic year"
        assert day.weekday() < 5, "session at a weekend"
        slot = (day, body["start_time"])
        assert slot not in journal.slots, "two sessions at one date and time"
        journal.slots.add(slot)
        pupils = [line["pupil_id"].key for line in body["attendance"]]
        assert pupils, "a session without pupils"
        assert len(set(pupils)) == len(pupils), "a pupil listed twice"
        for line in body["attendance"]:
            assert line["status"] in STATUSES
            pupil = self.pupils[line["pupil_id"].key]
            covering = [
                e
                for e in pupil.enrolments
                if e.programme == journal.programme and e.covers(day)
            ]
            assert covering, f"{pupil.key} is not enrolled on {day}"
            covering[0].has_records = True
        journal.last_session = max(journal.last_session or day, day)

    def _closure(self, command: Command, body: dict[str, Any]) -> None:
        journal = self.journals[command.params["journal"].key]
        closed_on = date.fromisoformat(body["closed_on"])
        assert journal.closed_on is None, "closed twice"
        if journal.last_session is not None:
            assert closed_on >= journal.last_session, "closed before its last session"
        journal.closed_on = closed_on

    @staticmethod
    def _check_no_attestation_after(
        pupil: Pupil, enrolment: Enrolment, last_day: date
    ) -> None:
        for key, day, _kind in pupil.attestations:
            assert key != enrolment.key or day <= last_day, "attestation after the end"


def _refs_in(value: Any) -> list[Ref]:
    if isinstance(value, Ref):
        return [value]
    if isinstance(value, dict):
        return [ref for item in value.values() for ref in _refs_in(item)]
    if isinstance(value, list):
        return [ref for item in value for ref in _refs_in(item)]
    return []


# Fixtures


@pytest.fixture(scope="module")
def plan() -> Plan:
    return build_plan(TODAY)


@pytest.fixture(scope="module")
def replay(plan: Plan) -> Replay:
    return Replay(plan).run()


def of_kind(plan: Plan, kind: str) -> list[Command]:
    return [command for command in plan if command.kind == kind]


# Determinism


def test_plan_is_deterministic_for_a_seed(plan: Plan) -> None:
    again = build_plan(TODAY)
    assert again.commands == plan.commands


def test_plan_differs_between_seeds() -> None:
    first = build_plan(TODAY, scale=0.1)
    other = build_plan(TODAY, seed=7, scale=0.1)
    pupils = [c.body for c in of_kind(first, "pupil")]
    assert [c.body for c in of_kind(other, "pupil")] != pupils


# Sizes


def test_plan_sizes_at_full_scale(plan: Plan) -> None:
    counts = plan.counts()
    assert counts["pupil"] == 300
    assert counts["journal"] == 60
    assert counts["programme"] >= 10
    assert counts["expulsion"] == 250
    assert 11_000 <= counts["session"] <= 13_000
    assert 1_500 <= counts["attestation"] <= 1_700
    assert counts["transfer"] >= 5
    assert counts["expulsion_cancellation"] >= 2
    assert counts["enrolment_cancellation"] == 1


def test_eight_specialists_keep_the_journals(plan: Plan) -> None:
    specialists = {
        (c.body["specialist"]["name"], c.body["specialist"]["position"])
        for c in of_kind(plan, "journal")
    }
    positions = Counter(position for _name, position in specialists)
    assert len(specialists) == 8
    assert set(positions) == {
        "педагог-психолог",
        "учитель-логопед",
        "учитель-дефектолог",
        "социальный педагог",
    }


def test_journals_span_four_years_and_both_kinds(plan: Plan) -> None:
    journals = of_kind(plan, "journal")
    years = Counter(c.body["academic_year"]["start"] for c in journals)
    kinds = Counter(c.body["kind"] for c in journals)
    assert sorted(years) == ["2023-09-01", "2024-09-01", "2025-09-01", "2026-09-01"]
    assert set(years.values()) == {15}
    assert kinds["group"] > 0
    assert kinds["individual"] > 0
    assert all(c.body["academic_year"]["end"].endswith("-05-31") for c in journals)


def test_programmes_are_social_pedagogical(plan: Plan) -> None:
    for command in of_kind(plan, "programme"):
        body = command.body
        assert body["orientation"] == ORIENTATION
        assert 3 <= len(body["criteria"]) <= 5
        assert body["approved_order"]["number"].endswith("-од")
        assert 0 <= body["levels"]["medium"] < body["levels"]["high"] <= 1


def test_expulsion_grounds_have_a_realistic_mix(plan: Plan) -> None:
    grounds = Counter(c.body["ground"] for c in of_kind(plan, "expulsion"))
    assert grounds.most_common(2)[0][0] == "completed"
    assert grounds.most_common(2)[1][0] == "parents_request"
    assert grounds["completed"] > 150
    assert grounds["transfer"] >= 3
    assert grounds["circumstances"] >= 2
    assert grounds["other"] >= 2
    for command in of_kind(plan, "expulsion"):
        assert ("ground_detail" in command.body) == (command.body["ground"] == "other")


# Dates


def test_no_date_is_after_today(plan: Plan) -> None:
    late = [c.describe() for c in plan for d in carried_dates(c) if d > TODAY]
    assert late == []


def test_order_dates_are_not_in_the_future(plan: Plan) -> None:
    orders = [
        date.fromisoformat(c.body[key]["date"])
        for c in plan
        for key in ("order", "approved_order", "protocol")
        if key in c.body
    ]
    assert len(orders) > 1000
    assert max(orders) <= TODAY


def test_order_numbers_grow_within_a_calendar_year(plan: Plan) -> None:
    signed: dict[str, date] = {}
    for command in plan:
        order = command.body.get("order")
        if order is not None:
            signed.setdefault(order["number"], date.fromisoformat(order["date"]))
    by_year: dict[int, list[tuple[date, int]]] = {}
    for number, day in signed.items():
        by_year.setdefault(day.year, []).append((day, int(number.split("-")[0])))
    assert all(number.endswith("-у") for number in signed)
    for entries in by_year.values():
        numbers = [number for _day, number in sorted(entries)]
        assert numbers == sorted(numbers)


def test_commands_come_in_date_order(plan: Plan) -> None:
    days = [command.day for command in plan]
    assert days == sorted(days)


def test_batches_cover_the_plan_in_order(plan: Plan) -> None:
    batches = list(plan.batches())
    flattened = [command for batch in batches for command in batch]
    assert flattened == list(plan.commands)
    for batch in batches:
        if batch[0].kind == "session":
            assert {c.kind for c in batch} == {"session"}
        else:
            assert len({c.batch for c in batch}) == 1
    session_days = [len({c.day for c in b}) for b in batches if b[0].kind == "session"]
    assert max(session_days) > 1


def test_sessions_only_on_past_weekdays(plan: Plan) -> None:
    for command in of_kind(plan, "session"):
        day = date.fromisoformat(command.body["date"])
        assert day.weekday() < 5
        assert day < TODAY
        assert day.month not in (6, 7, 8)


def test_winter_brings_more_illness(plan: Plan) -> None:
    lines: dict[str, Counter[str]] = {"winter": Counter(), "autumn": Counter()}
    for command in of_kind(plan, "session"):
        month = date.fromisoformat(command.body["date"]).month
        statuses = [line["status"] for line in command.body["attendance"]]
        if month in (12, 1, 2):
            lines["winter"].update(statuses)
        elif month in (9, 10):
            lines["autumn"].update(statuses)
    winter_ill = lines["winter"]["ill"] / sum(lines["winter"].values())
    autumn_ill = lines["autumn"]["ill"] / sum(lines["autumn"].values())
    present = lines["autumn"]["present"] / sum(lines["autumn"].values())
    assert winter_ill > 1.5 * autumn_ill
    assert present > 0.75


def test_attestations_in_december_and_may(plan: Plan) -> None:
    for command in of_kind(plan, "attestation"):
        month = date.fromisoformat(command.body["date"]).month
        expected = {"intermediate": 12, "final": 5}[command.body["kind"]]
        assert month == expected
        assert command.body["protocol"]["date"] == command.body["date"]


def test_past_journals_are_closed_at_year_end(plan: Plan) -> None:
    closed = {
        c.params["journal"].key: c.body["closed_on"] for c in of_kind(plan, "closure")
    }
    for command in of_kind(plan, "journal"):
        end = date.fromisoformat(command.body["academic_year"]["end"])
        if end < TODAY:
            closed_on = date.fromisoformat(closed[command.creates or ""])
            assert end - timedelta(days=3) <= closed_on <= end
        else:
            assert command.creates not in closed


# The two leavings that illustrate retention rules


def test_leap_day_expulsion_present_once(plan: Plan) -> None:
    leap = [
        c
        for c in of_kind(plan, "expulsion")
        if c.body["effective_date"] == "2024-02-29"
    ]
    assert len(leap) == 1


def test_new_year_expulsion_signed_in_january(plan: Plan) -> None:
    new_year = [
        c
        for c in of_kind(plan, "expulsion")
        if c.body["effective_date"].endswith("-12-31")
    ]
    assert len(new_year) == 1
    effective = date.fromisoformat(new_year[0].body["effective_date"])
    signed = date.fromisoformat(new_year[0].body["order"]["date"])
    assert signed.year == effective.year + 1
    assert signed.month == 1


def test_special_leavings_close_the_file(plan: Plan, replay: Replay) -> None:
    for effective in ("2024-02-29", "2025-12-31"):
        command = next(
            c
            for c in of_kind(plan, "expulsion")
            if c.body["effective_date"] == effective
        )
        pupil = replay.pupils[command.params["pupil"].key]
        assert pupil.status == "left"
        leaving = pupil.leaving()
        assert leaving is not None
        assert leaving.effective.isoformat() == effective


# The records API's rules


def test_replay_accepts_every_command(replay: Replay, plan: Plan) -> None:
    assert len(replay.created) == sum(1 for c in plan if c.creates)


def test_attendance_matches_the_final_timeline(plan: Plan, replay: Replay) -> None:
    """Check every attendance line against the enrolments as they stand at the end."""
    journals = {c.creates: c.body["programme_id"].key for c in of_kind(plan, "journal")}
    lines = 0
    for command in of_kind(plan, "session"):
        programme = journals[command.params["journal"].key]
        day = date.fromisoformat(command.body["date"])
        for line in command.body["attendance"]:
            pupil = replay.pupils[line["pupil_id"].key]
            assert any(
                e.programme == programme and e.covers(day) for e in pupil.enrolments
            ), f"{pupil.key} in {command.describe()}"
            lines += 1
    assert lines > 20_000


def test_plan_has_readmissions_and_cancellations(replay: Replay) -> None:
    enrolments = [e for _pupil, e in replay.enrolments.values()]
    expulsions = [x for _e, x in replay.expulsions.values()]
    assert sum(1 for e in enrolments if e.readmission) >= 5
    assert sum(1 for e in enrolments if e.status == "cancelled") == 1
    assert sum(1 for x in expulsions if x.cancelled) >= 2
    assert sum(1 for e in enrolments if e.by_transfer) >= 5


def test_pupils_attend_several_programmes(replay: Replay) -> None:
    per_pupil = Counter(len(p.enrolments) for p in replay.pupils.values())
    assert sum(count for size, count in per_pupil.items() if size >= 2) > 50


# Names


def test_pupil_identities_are_unique(plan: Plan) -> None:
    identities = [
        (
            normalised_full_name(
                c.body["surname"], c.body["name"], c.body["patronymic"]
            ),
            c.body["birth_date"],
        )
        for c in of_kind(plan, "pupil")
    ]
    assert len(set(identities)) == len(identities)


def test_pupil_names_agree_in_gender(plan: Plan) -> None:
    feminine = {feminine_surname(surname) for surname in SURNAMES}
    for command in of_kind(plan, "pupil"):
        body = command.body
        if body["name"] in GIRLS_NAMES:
            assert body["patronymic"].endswith(("вна", "чна")), body
            assert body["surname"] in feminine, body
        else:
            assert body["name"] in BOYS_NAMES, body
            assert body["patronymic"].endswith(("вич", "ич")), body
            assert body["surname"] in SURNAMES, body


def test_pupils_are_five_to_seventeen(plan: Plan, replay: Replay) -> None:
    first_enrolment = {}
    for command in plan:
        if command.kind in ("enrolment", "transfer"):
            first_enrolment.setdefault(
                command.params["pupil"].key,
                date.fromisoformat(command.body["effective_date"]),
            )
    for command in of_kind(plan, "pupil"):
        birth = date.fromisoformat(command.body["birth_date"])
        start = first_enrolment.get(command.lane, TODAY)
        age = (start - birth).days / 365.25
        assert 5 <= age < 18, command.body


# Other days and sizes


@pytest.mark.parametrize(
    "today",
    [date(2023, 12, 20), date(2024, 3, 15), date(2025, 7, 1), date(2026, 9, 3)],
)
def test_scaled_plans_respect_the_rules(today: date) -> None:
    plan = build_plan(today, scale=0.2)
    Replay(plan).run()
    assert max(d for c in plan for d in carried_dates(c)) <= today


def test_small_plan_keeps_every_case() -> None:
    plan = build_plan(TODAY, scale=0.05)
    counts = plan.counts()
    Replay(plan).run()
    assert counts["pupil"] == 15
    assert counts["transfer"] >= 1
    assert counts["expulsion_cancellation"] >= 1
    assert counts["enrolment_cancellation"] == 1
    effective = {c.body["effective_date"] for c in of_kind(plan, "expulsion")}
    assert "2024-02-29" in effective
    assert "2025-12-31" in effective


def test_plan_before_the_first_year_is_rejected() -> None:
    with pytest.raises(ValueError, match="1 September 2023"):
        build_plan(date(2023, 8, 31))
