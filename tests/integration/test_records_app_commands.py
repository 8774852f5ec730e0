"""RecordsApplication commands on every backend: duplicates, unknown ids, rules."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from uuid import uuid4

import pytest

from services.records.domain.errors import (
    DuplicateProgrammeError,
    DuplicatePupilError,
    InvalidFieldError,
    NotFoundError,
    RuleViolationError,
)
from tests.records_helpers import (
    CRITERIA,
    create_programme,
    enrol,
    open_journal,
    order,
    record_session,
    register_pupil,
    scores,
)

pytestmark = pytest.mark.usefixtures("principal")


@pytest.fixture
def app(records_app):
    return records_app


def test_command_returns_resource_and_position(app):
    result = app.register_pupil(
        surname="Иванов",
        name="Пётр",
        patronymic=None,
        birth_date=date(2015, 4, 3),
        opened_on=date(2024, 8, 26),
    )

    assert result.resource["status"] == "registered"
    assert result.resource["file_opened_on"] == date(2024, 8, 26)
    assert result.position == app.head_position()
    assert app.pupil(result.resource["id"]).surname == "Иванов"


def test_stored_pupil_reads_back_equal(app):
    programme_id = create_programme(app)
    pupil_id = register_pupil(app)
    enrol(app, pupil_id, programme_id)
    app.expel(
        pupil_id,
        programme_id=programme_id,
        effective_date=date(2025, 12, 31),
        ground="other",
        ground_detail="переезд семьи",
        order=order("40-у", date(2026, 1, 12)),
    )

    pupil = app.repository.get(pupil_id)

    assert pupil.status == "left"
    assert pupil.file_closed_on == date(2026, 1, 12)
    assert pupil.birth_date == date(2015, 4, 3)


# Duplicates


@pytest.mark.parametrize(
    ("surname", "name", "patronymic"),
    [
        ("Иванов", "Пётр", "Сергеевич"),
        ("  ИВАНОВ ", "петр", "сергеевич"),
        ("Иванов", "Пётр", "Сергеевич "),
    ],
)
def test_duplicate_pupil_names_existing_id(app, surname, name, patronymic):
    existing = register_pupil(app, "Иванов", "Пётр", "Сергеевич", date(2015, 4, 3))
    head = app.head_position()

    with pytest.raises(DuplicatePupilError) as raised:
        register_pupil(app, surname, name, patronymic, date(2015, 4, 3))

    assert raised.value.existing_id == existing
    assert app.head_position() == head


def test_same_name_other_birth_date_registered(app):
    first = register_pupil(app, birth_date=date(2015, 4, 3))

    second = register_pupil(app, birth_date=date(2016, 4, 3))

    assert first != second


def test_duplicate_programme_code_rejected(app):
    create_programme(app, "КРЗ-1")
    head = app.head_position()

    with pytest.raises(DuplicateProgrammeError):
        create_programme(app, "крз-1")
    assert app.head_position() == head


def test_programme_with_other_code_created(app):
    first = create_programme(app, "КРЗ-1")
    second = create_programme(app, "КРЗ-2")

    assert first != second
    assert app.programme(second).code == "КРЗ-2"


def test_programme_thresholds_kept_exactly(app):
    result = app.create_programme(
        code="ЛГ-1",
        title="Логопедия",
        orientation="социально-педагогическая",
        approved_order=order("1-о", date(2024, 8, 1)),
        criteria=CRITERIA,
        high=Decimal("0.56"),
        medium=Decimal("0.3"),
    )

    stored = app.programme(result.resource["id"])
    assert stored.levels == {"high": "0.56", "medium": "0.3"}


# Unknown ids


def test_enrolment_in_unknown_programme_is_invalid_field(app):
    pupil_id = register_pupil(app)
    head = app.head_position()

    with pytest.raises(InvalidFieldError) as raised:
        enrol(app, pupil_id, uuid4())

    assert set(raised.value.errors) == {"programme_id"}
    assert app.head_position() == head


def test_programme_id_of_other_aggregate_is_invalid_field(app):
    pupil_id = register_pupil(app)

    with pytest.raises(InvalidFieldError) as raised:
        enrol(app, pupil_id, pupil_id)

    assert set(raised.value.errors) == {"programme_id"}


def test_expulsion_from_unknown_programme_is_invalid_field(app):
    pupil_id = register_pupil(app)

    with pytest.raises(InvalidFieldError) as raised:
        app.expel(
            pupil_id,
            programme_id=uuid4(),
            effective_date=date(2025, 5, 31),
            ground="completed",
            ground_detail=None,
            order=order("40-у", date(2025, 5, 31)),
        )

    assert set(raised.value.errors) == {"programme_id"}


def test_attestation_in_unknown_programme_is_invalid_field(app):
    pupil_id = register_pupil(app)

    with pytest.raises(InvalidFieldError) as raised:
        app.record_attestation(
            pupil_id,
            programme_id=uuid4(),
            kind="final",
            on=date(2025, 5, 20),
            scores=scores(),
            protocol=order("3", date(2025, 5, 20)),
        )

    assert set(raised.value.errors) == {"programme_id"}


def test_journal_for_unknown_programme_is_invalid_field(app):
    with pytest.raises(InvalidFieldError) as raised:
        open_journal(app, uuid4())

    assert set(raised.value.errors) == {"programme_id"}
    assert app.head_position() == 0


@pytest.mark.parametrize("side", ["from_programme_id", "to_programme_id"])
def test_transfer_with_unknown_programme_is_invalid_field(app, side):
    known = create_programme(app)
    pupil_id = register_pupil(app)
    enrol(app, pupil_id, known)
    programmes = {"from_programme_id": known, "to_programme_id": known}
    programmes[side] = uuid4()

    with pytest.raises(InvalidFieldError) as raised:
        app.transfer(
            pupil_id,
            effective_date=date(2025, 1, 13),
            order=order("5-п", date(2025, 1, 10)),
            **programmes,
        )

    assert set(raised.value.errors) == {side}


def test_unknown_pupil_in_path_not_found(app):
    programme_id = create_programme(app)

    with pytest.raises(NotFoundError) as raised:
        enrol(app, uuid4(), programme_id)

    assert raised.value.kind == "pupil"


def test_unknown_journal_in_path_not_found(app):
    with pytest.raises(NotFoundError) as raised:
        app.close_journal(uuid4(), closed_on=date(2025, 5, 30))

    assert raised.value.kind == "journal"


# Attendance


@pytest.fixture
def class_of_two(app):
    """A programme, its journal and two pupils, the second enrolled from October."""
    programme_id = create_programme(app)
    journal_id = open_journal(app, programme_id)
    early = register_pupil(app, "Алексеева", "Мария", None, date(2015, 1, 9))
    late = register_pupil(app, "Борисов", "Глеб", None, date(2015, 2, 9))
    enrol(app, early, programme_id, date(2024, 9, 2))
    enrol(app, late, programme_id, date(2024, 10, 1))
    return journal_id, early, late


def test_attendance_of_enrolled_pupils_recorded(app, class_of_two):
    journal_id, early, late = class_of_two

    position = record_session(
        app, journal_id, date(2024, 10, 1), {early: "present", late: "ill"}
    )

    assert position == app.head_position()
    assert app.journal(journal_id).session_count == 1
    for pupil_id in (early, late):
        (enrolment,) = app.pupil(pupil_id).enrolments.values()
        assert enrolment.has_records


def test_attendance_before_enrolment_writes_nothing(app, class_of_two):
    journal_id, early, late = class_of_two
    head = app.head_position()
    versions = {pupil_id: app.pupil(pupil_id).version for pupil_id in (early, late)}

    with pytest.raises(RuleViolationError):
        record_session(
            app, journal_id, date(2024, 9, 30), {early: "present", late: "present"}
        )

    assert app.head_position() == head
    assert app.journal(journal_id).session_count == 0
    for pupil_id, version in versions.items():
        assert app.pupil(pupil_id).version == version


def test_attendance_after_expulsion_writes_nothing(app, class_of_two):
    journal_id, early, _ = class_of_two
    programme_id = app.journal(journal_id).programme_id
    app.expel(
        early,
        programme_id=programme_id,
        effective_date=date(2024, 11, 29),
        ground="parents_request",
        ground_detail=None,
        order=order("40-у", date(2024, 11, 25)),
    )
    head = app.head_position()

    record_session(app, journal_id, date(2024, 11, 29), {early: "present"}, "09:00")
    with pytest.raises(RuleViolationError):
        record_session(app, journal_id, date(2024, 12, 2), {early: "present"})

    assert app.head_position() > head
    assert app.journal(journal_id).session_count == 1


def test_unknown_pupil_in_attendance_names_line(app, class_of_two):
    journal_id, early, late = class_of_two
    head = app.head_position()

    with pytest.raises(InvalidFieldError) as raised:
        record_session(
            app,
            journal_id,
            date(2024, 10, 7),
            {early: "present", late: "absent", uuid4(): "present"},
        )

    assert set(raised.value.errors) == {"attendance.2.pupil_id"}
    assert app.head_position() == head


def test_every_unknown_pupil_in_attendance_reported(app, class_of_two):
    journal_id, early, _ = class_of_two

    with pytest.raises(InvalidFieldError) as raised:
        record_session(
            app,
            journal_id,
            date(2024, 10, 7),
            {uuid4(): "present", early: "present", uuid4(): "absent"},
        )

    assert set(raised.value.errors) == {
        "attendance.0.pupil_id",
        "attendance.2.pupil_id",
    }


def test_journal_id_as_pupil_in_attendance_names_line(app, class_of_two):
    journal_id, early, _ = class_of_two

    with pytest.raises(InvalidFieldError) as raised:
        record_session(
            app, journal_id, date(2024, 10, 7), {early: "present", journal_id: "ill"}
        )

    assert set(raised.value.errors) == {"attendance.1.pupil_id"}


def test_session_in_closed_journal_writes_nothing(app, class_of_two):
    journal_id, early, _ = class_of_two
    app.close_journal(journal_id, closed_on=date(2024, 12, 27))
    head = app.head_position()

    with pytest.raises(RuleViolationError):
        record_session(app, journal_id, date(2024, 12, 2), {early: "present"})

    assert app.head_position() == head


def test_session_outside_year_is_invalid_field(app, class_of_two):
    journal_id, early, _ = class_of_two

    with pytest.raises(InvalidFieldError) as raised:
        record_session(app, journal_id, date(2025, 6, 2), {early: "present"})

    assert set(raised.value.errors) == {"date"}


def test_enrolment_with_attendance_cannot_be_cancelled(app, class_of_two):
    journal_id, early, _ = class_of_two
    record_session(app, journal_id, date(2024, 9, 9), {early: "present"})
    (enrolment,) = app.pupil(early).enrolments.values()

    with pytest.raises(RuleViolationError):
        app.cancel_enrolment(
            early,
            enrolment.id,
            order=order("9-у", date(2024, 9, 10)),
            reason="ошибка",
        )
