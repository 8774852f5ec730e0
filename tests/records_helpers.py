"""Builders for records tests: programmes, pupils and orders with sane defaults."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any
from uuid import UUID

from sqlalchemy import Engine, select

from services.records.application import CommandResult, RecordsApplication
from services.records.domain.programmes import Programme, order_dict
from services.records.domain.pupils import Pupil
from services.records.readmodels import metadata

# Three criteria with 25 points in total, so that 14 of 25 is exactly 0.56.
CRITERIA: list[dict[str, Any]] = [
    {"code": "attention", "title": "Внимание", "max_score": 10},
    {"code": "memory", "title": "Память", "max_score": 10},
    {"code": "speech", "title": "Речь", "max_score": 5},
]
HIGH = Decimal("0.56")
MEDIUM = Decimal("0.3")

YEAR_START = date(2024, 9, 2)
YEAR_END = date(2025, 5, 31)
SPECIALIST = {"name": "Смирнова Ольга Петровна", "position": "педагог-психолог"}


def order(number: str, signed_on: date) -> dict[str, Any]:
    """Return an order as commands take it."""
    return order_dict(number, signed_on)


def scores(attention: int = 5, memory: int = 5, speech: int = 2) -> dict[str, int]:
    """Return scores for the three default criteria."""
    return {"attention": attention, "memory": memory, "speech": speech}


def new_programme(
    code: str = "КРЗ-1",
    criteria: list[dict[str, Any]] | None = None,
    high: Decimal = HIGH,
    medium: Decimal = MEDIUM,
) -> Programme:
    """Create a programme aggregate without storing it."""
    return Programme.approve(
        code=code,
        title=f"Программа {code}",
        orientation="социально-педагогическая",
        approved_order=order(f"{code}-у", date(2024, 8, 20)),
        criteria=criteria if criteria is not None else CRITERIA,
        high=high,
        medium=medium,
    )


def new_pupil(
    surname: str = "Иванов",
    name: str = "Пётр",
    patronymic: str | None = "Сергеевич",
    birth_date: date = date(2015, 4, 3),
    opened_on: date = date(2024, 8, 26),
) -> Pupil:
    """Create a registered pupil aggregate without storing it."""
    return Pupil.register(
        surname=surname,
        name=name,
        patronymic=patronymic,
        birth_date=birth_date,
        opened_on=opened_on,
    )


def create_programme(app: RecordsApplication, code: str = "КРЗ-1") -> UUID:
    """Store a programme with the default criteria and return its id."""
    result = app.create_programme(
        code=code,
        title=f"Программа {code}",
        orientation="социально-педагогическая",
        approved_order=order(f"{code}-у", date(2024, 8, 20)),
        criteria=CRITERIA,
        high=HIGH,
        medium=MEDIUM,
    )
    return result.resource["id"]


def register_pupil(
    app: RecordsApplication,
    surname: str = "Иванов",
    name: str = "Пётр",
    patronymic: str | None = "Сергеевич",
    birth_date: date = date(2015, 4, 3),
) -> UUID:
    """Store a newly registered pupil and return its id."""
    result = app.register_pupil(
        surname=surname,
        name=name,
        patronymic=patronymic,
        birth_date=birth_date,
        opened_on=date(2024, 8, 26),
    )
    return result.resource["id"]


def enrol(
    app: RecordsApplication,
    pupil_id: UUID,
    programme_id: UUID,
    effective_date: date = date(2024, 9, 2),
) -> UUID:
    """Enrol by an order signed on the effective date and return the enrolment id."""
    result = app.enrol(
        pupil_id,
        programme_id=programme_id,
        effective_date=effective_date,
        order=order("12-у", effective_date),
    )
    return result.resource["id"]


def open_journal(app: RecordsApplication, programme_id: UUID) -> UUID:
    """Open a group journal for the 2024/2025 academic year and return its id."""
    result = app.open_journal(
        programme_id=programme_id,
        specialist=SPECIALIST,
        year_start=YEAR_START,
        year_end=YEAR_END,
        kind="group",
        group="Группа 1",
    )
    return result.resource["id"]


def record_session(
    app: RecordsApplication,
    journal_id: UUID,
    on: date,
    attendance: dict[UUID, str],
    start_time: str = "10:00",
) -> int:
    """Record a 40-minute session and return its log position."""
    result = app.record_session(
        journal_id,
        on=on,
        start_time=start_time,
        duration_minutes=40,
        topic="Развитие внимания",
        attendance=[
            {"pupil_id": pupil_id, "status": status}
            for pupil_id, status in attendance.items()
        ],
    )
    return result.position


def dump_read_models(engine: Engine) -> dict[str, list[dict[str, Any]]]:
    """Return every read-model row, table by table, in primary-key order."""
    dump = {}
    with engine.connect() as connection:
        for table in metadata.sorted_tables:
            key = list(table.primary_key.columns)
            rows = connection.execute(select(table).order_by(*key)).mappings()
            dump[table.name] = [dict(row) for row in rows]
    return dump


@dataclass
class Centre:
    """Ids of the records `populate` stores, by role in the story."""

    programmes: dict[str, UUID] = field(default_factory=dict)
    journals: dict[str, UUID] = field(default_factory=dict)
    pupils: dict[str, UUID] = field(default_factory=dict)


# Names and birth dates used by `populate`. None of them may reach the feed.
PEOPLE = {
    "maria": ("Алексеева", "Мария", "Игоревна", date(2015, 1, 9)),
    "gleb": ("Борисов", "Глеб", None, date(2015, 2, 10)),
    "vera": ("Ёлкина", "Вера", "Олеговна", date(2014, 3, 11)),
    "lev": ("Гусев", "Лев", "Андреевич", date(2016, 6, 17)),
}


def populate(app: RecordsApplication) -> Centre:
    """Store a small centre that uses every kind of records event."""
    centre = Centre()
    centre.programmes["psy"] = create_programme(app, "КРЗ-1")
    centre.programmes["speech"] = create_programme(app, "ЛГ-2")
    for key, programme_id in centre.programmes.items():
        centre.journals[key] = open_journal(app, programme_id)
    for key, (surname, name, patronymic, born) in PEOPLE.items():
        centre.pupils[key] = register_pupil(app, surname, name, patronymic, born)
    _attend_first_term(app, centre)
    _change_programmes(app, centre)
    return centre


def _attend_first_term(app: RecordsApplication, centre: Centre) -> None:
    psy, speech = centre.programmes["psy"], centre.programmes["speech"]
    maria, gleb, vera = (centre.pupils[key] for key in ("maria", "gleb", "vera"))
    for pupil_id in (maria, gleb, vera):
        enrol(app, pupil_id, psy)
    enrol(app, maria, speech)
    record_session(
        app,
        centre.journals["psy"],
        date(2024, 9, 9),
        {maria: "present", gleb: "absent", vera: "ill"},
    )
    record_session(
        app,
        centre.journals["psy"],
        date(2024, 9, 16),
        {maria: "excused", gleb: "present", vera: "present"},
    )
    record_session(
        app, centre.journals["speech"], date(2024, 9, 10), {maria: "present"}
    )
    attestation = app.record_attestation(
        maria,
        programme_id=psy,
        kind="intermediate",
        on=date(2024, 12, 20),
        scores=scores(7, 4, 3),
        protocol=order("3-п", date(2024, 12, 20)),
    )
    app.correct_attestation(
        maria,
        attestation.resource["id"],
        scores=scores(7, 4, 2),
        reason="ошибка подсчёта",
    )


def _change_programmes(app: RecordsApplication, centre: Centre) -> None:
    psy, speech = centre.programmes["psy"], centre.programmes["speech"]
    maria, gleb, vera, lev = (
        centre.pupils[key] for key in ("maria", "gleb", "vera", "lev")
    )
    app.transfer(
        gleb,
        from_programme_id=psy,
        to_programme_id=speech,
        effective_date=date(2025, 1, 13),
        order=order("5-п", date(2025, 1, 10)),
    )
    record_session(
        app,
        centre.journals["speech"],
        date(2025, 1, 14),
        {maria: "ill", gleb: "present"},
    )
    first = expel(app, vera, psy, date(2025, 2, 28), "parents_request")
    app.cancel_expulsion(
        vera,
        first.resource["id"],
        order=order("41-у", date(2025, 3, 3)),
        reason="приказ отменён",
    )
    expel(app, vera, psy, date(2025, 3, 31), "other", "переезд семьи")
    enrolment_id = enrol(app, lev, speech, date(2025, 2, 3))
    app.cancel_enrolment(
        lev, enrolment_id, order=order("9-у", date(2025, 2, 4)), reason="ошибка"
    )
    expel(app, maria, speech, date(2025, 5, 30), "completed")
    app.close_journal(centre.journals["psy"], closed_on=date(2025, 5, 30))


def expel(
    app: RecordsApplication,
    pupil_id: UUID,
    programme_id: UUID,
    effective_date: date,
    ground: str,
    ground_detail: str | None = None,
) -> CommandResult:
    """Expel a pupil by an order signed on the effective date."""
    return app.expel(
        pupil_id,
        programme_id=programme_id,
        effective_date=effective_date,
        ground=ground,
        ground_detail=ground_detail,
        order=order("40-у", effective_date),
    )
