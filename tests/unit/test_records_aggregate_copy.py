"""Copies of aggregates handed out by the repository share nothing mutable."""

from __future__ import annotations

import copy
from datetime import date
from decimal import Decimal
from uuid import uuid4

from services.records.domain.programmes import Programme
from services.records.domain.pupils import Pupil
from shared.actor import Principal, acting_as

REGISTRAR = Principal(name="Registrar", role="registrar", token_id="t-registrar")


def make_pupil() -> Pupil:
    with acting_as(REGISTRAR):
        pupil = Pupil.register(
            surname="Иванова",
            name="Мария",
            patronymic=None,
            birth_date=date(2015, 3, 4),
            opened_on=date(2024, 9, 1),
        )
    return pupil


def enrolled_pupil() -> Pupil:
    pupil = make_pupil()
    with acting_as(REGISTRAR):
        pupil.enrol(
            programme_id=PROGRAMME_ID,
            effective_date=date(2024, 9, 2),
            order={"number": "12-у", "date": date(2024, 9, 2)},
        )
    return pupil


PROGRAMME_ID = uuid4()


def test_copy_equals_original_and_shares_no_mutable_part():
    pupil = enrolled_pupil()
    duplicate = copy.deepcopy(pupil)

    assert type(duplicate) is Pupil
    assert vars(duplicate) == vars(pupil)
    enrolment_id = next(iter(pupil.enrolments))
    assert duplicate.enrolments is not pupil.enrolments
    assert duplicate.enrolments[enrolment_id] is not pupil.enrolments[enrolment_id]
    assert duplicate.enrolments[enrolment_id].order is not (
        pupil.enrolments[enrolment_id].order
    )


def test_changing_copy_leaves_original():
    pupil = enrolled_pupil()
    pupil.collect_events()
    duplicate = copy.deepcopy(pupil)
    enrolment_id = next(iter(pupil.enrolments))

    duplicate.enrolments[enrolment_id].order["number"] = "13-у"
    duplicate.enrolments[enrolment_id].expulsions.append("x")
    duplicate.attestations["a"] = "b"

    assert pupil.enrolments[enrolment_id].order["number"] == "12-у"
    assert pupil.enrolments[enrolment_id].expulsions == []
    assert pupil.attestations == {}


def test_pending_events_are_copied_too():
    pupil = enrolled_pupil()
    duplicate = copy.deepcopy(pupil)

    assert [type(e) for e in duplicate.collect_events()] == [
        type(e) for e in pupil.collect_events()
    ]


def test_programme_copy_keeps_decimal_thresholds():
    with acting_as(REGISTRAR):
        programme = Programme.approve(
            code="ПРОГ-1",
            title="Школа общения",
            orientation="социально-гуманитарная",
            approved_order={"number": "1-од", "date": date(2019, 8, 28)},
            criteria=[{"code": "speech", "title": "Речь", "max_score": 10}],
            high=Decimal("0.8"),
            medium=Decimal("0.5"),
        )
    duplicate = copy.deepcopy(programme)

    assert vars(duplicate) == vars(programme)
    assert duplicate.criteria is not programme.criteria
