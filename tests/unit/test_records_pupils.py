"""Rules of the pupil's personal file: enrolments, expulsions, transfers, results."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from uuid import uuid4

import pytest

from services.records.domain.errors import (
    InvalidFieldError,
    NotEnrolledError,
    NotFoundError,
    RuleViolationError,
)
from services.records.domain.pupils import Pupil
from shared.actor import NoPrincipalError, Principal, acting_as, current_principal
from tests.records_helpers import new_programme, new_pupil, order, scores

pytestmark = pytest.mark.usefixtures("principal")

SEPT_2 = date(2024, 9, 2)
PROGRAMME_A = uuid4()
PROGRAMME_B = uuid4()


def enrolled(*programme_ids, on=SEPT_2) -> Pupil:
    pupil = new_pupil()
    for programme_id in programme_ids:
        pupil.enrol(
            programme_id=programme_id, effective_date=on, order=order("1-у", on)
        )
    return pupil


def expel(pupil, programme_id, effective, signed=None, ground="parents_request"):
    return pupil.expel(
        programme_id=programme_id,
        effective_date=effective,
        ground=ground,
        ground_detail=None,
        order=order("40-у", signed or effective),
    )


def last_event(pupil):
    return pupil.pending_events[-1]


# Registration


def test_registered_file_is_open():
    pupil = new_pupil(opened_on=date(2024, 8, 26))

    assert pupil.status == "registered"
    assert pupil.opened_on == date(2024, 8, 26)
    assert pupil.file_closed_on is None
    assert pupil.enrolments == {}


def test_registration_before_birth_rejected():
    with pytest.raises(RuleViolationError):
        new_pupil(birth_date=date(2024, 9, 1), opened_on=date(2024, 8, 26))


def test_events_record_acting_principal(principal):
    pupil = enrolled(PROGRAMME_A)

    for event in pupil.pending_events:
        assert event.actor == {
            "name": principal.name,
            "role": principal.role,
            "token_id": principal.token_id,
        }


def test_events_record_principal_of_each_command():
    pupil = new_pupil()
    methodist = Principal(token_id="token-m", name="Козлова Вера", role="methodist")

    with acting_as(methodist):
        pupil.enrol(
            programme_id=PROGRAMME_A, effective_date=SEPT_2, order=order("1", SEPT_2)
        )

    assert last_event(pupil).actor["role"] == "methodist"
    assert pupil.pending_events[0].actor["role"] == "registrar"


def test_command_without_principal_raises():
    pupil = new_pupil()
    token = current_principal.set(None)
    try:
        with pytest.raises(NoPrincipalError):
            pupil.enrol(
                programme_id=PROGRAMME_A,
                effective_date=SEPT_2,
                order=order("1", SEPT_2),
            )
    finally:
        current_principal.reset(token)


# Enrolment


def test_enrolment_makes_pupil_enrolled():
    pupil = enrolled(PROGRAMME_A)

    (enrolment,) = pupil.enrolments.values()
    assert pupil.status == "enrolled"
    assert enrolment.status == "active"
    assert enrolment.effective_date == SEPT_2
    assert last_event(pupil).reopened_file is False


def test_second_active_enrolment_in_programme_rejected():
    pupil = enrolled(PROGRAMME_A)

    with pytest.raises(RuleViolationError):
        pupil.enrol(
            programme_id=PROGRAMME_A,
            effective_date=date(2024, 10, 1),
            order=order("2-у", date(2024, 10, 1)),
        )
    assert len(pupil.enrolments) == 1


def test_enrolments_in_two_programmes_allowed():
    pupil = enrolled(PROGRAMME_A, PROGRAMME_B)

    assert pupil.status == "enrolled"
    assert {e.programme_id for e in pupil.enrolments.values()} == {
        PROGRAMME_A,
        PROGRAMME_B,
    }


def test_enrolment_in_programme_after_leaving_it_allowed():
    pupil = enrolled(PROGRAMME_A, PROGRAMME_B)
    expel(pupil, PROGRAMME_A, date(2024, 12, 20))

    pupil.enrol(
        programme_id=PROGRAMME_A,
        effective_date=date(2024, 12, 21),
        order=order("50-у", date(2024, 12, 21)),
    )

    statuses = sorted(
        e.status for e in pupil.enrolments.values() if e.programme_id == PROGRAMME_A
    )
    assert statuses == ["active", "expelled"]


def test_enrolment_on_last_day_of_previous_rejected():
    pupil = enrolled(PROGRAMME_A, PROGRAMME_B)
    expel(pupil, PROGRAMME_A, date(2024, 12, 20))

    with pytest.raises(RuleViolationError):
        pupil.enrol(
            programme_id=PROGRAMME_A,
            effective_date=date(2024, 12, 20),
            order=order("50-у", date(2024, 12, 20)),
        )


# Expulsion


def test_expulsion_without_enrolment_rejected():
    pupil = new_pupil()

    with pytest.raises(RuleViolationError):
        expel(pupil, PROGRAMME_A, date(2024, 12, 20))


def test_expulsion_from_other_programme_rejected():
    pupil = enrolled(PROGRAMME_A)

    with pytest.raises(RuleViolationError):
        expel(pupil, PROGRAMME_B, date(2024, 12, 20))


def test_second_expulsion_from_programme_rejected():
    pupil = enrolled(PROGRAMME_A)
    expel(pupil, PROGRAMME_A, date(2024, 12, 20))

    with pytest.raises(RuleViolationError):
        expel(pupil, PROGRAMME_A, date(2024, 12, 25))


def test_expulsion_before_enrolment_effective_date_rejected():
    pupil = enrolled(PROGRAMME_A)

    with pytest.raises(RuleViolationError):
        expel(pupil, PROGRAMME_A, SEPT_2 - timedelta(days=1), signed=SEPT_2)
    assert pupil.status == "enrolled"


def test_expulsion_on_enrolment_effective_date_allowed():
    pupil = enrolled(PROGRAMME_A)

    expel(pupil, PROGRAMME_A, SEPT_2)

    assert pupil.status == "left"


def test_expulsion_with_unknown_ground_rejected():
    pupil = enrolled(PROGRAMME_A)

    with pytest.raises(ValueError):
        expel(pupil, PROGRAMME_A, date(2024, 12, 20), ground="systematic_absence")


def test_last_expulsion_closes_file():
    pupil = enrolled(PROGRAMME_A)

    expel(pupil, PROGRAMME_A, date(2025, 5, 31))

    event = last_event(pupil)
    assert pupil.status == "left"
    assert pupil.file_closed_on == date(2025, 5, 31)
    assert event.left_centre is True
    assert event.file_closed_on == date(2025, 5, 31)


def test_file_closes_on_order_date_when_later():
    pupil = enrolled(PROGRAMME_A)

    expel(pupil, PROGRAMME_A, date(2025, 12, 31), signed=date(2026, 1, 12))

    assert pupil.file_closed_on == date(2026, 1, 12)
    assert last_event(pupil).file_closed_on == date(2026, 1, 12)


def test_file_closes_on_effective_date_when_later():
    pupil = enrolled(PROGRAMME_A)

    expel(pupil, PROGRAMME_A, date(2025, 6, 15), signed=date(2025, 5, 30))

    assert pupil.file_closed_on == date(2025, 6, 15)


def test_expulsion_from_one_of_two_keeps_file_open():
    pupil = enrolled(PROGRAMME_A, PROGRAMME_B)

    expel(pupil, PROGRAMME_A, date(2024, 12, 20))

    event = last_event(pupil)
    assert pupil.status == "enrolled"
    assert pupil.file_closed_on is None
    assert event.left_centre is False
    assert event.file_closed_on is None


def test_file_closes_with_last_of_two_expulsions():
    pupil = enrolled(PROGRAMME_A, PROGRAMME_B)
    expel(pupil, PROGRAMME_A, date(2024, 12, 20))

    expel(pupil, PROGRAMME_B, date(2025, 3, 14), signed=date(2025, 3, 10))

    assert pupil.status == "left"
    assert pupil.file_closed_on == date(2025, 3, 14)
    assert pupil.leaving_expulsion.effective_date == date(2025, 3, 14)


def test_file_closes_with_latest_effective_expulsion():
    pupil = enrolled(PROGRAMME_A, PROGRAMME_B)
    expel(pupil, PROGRAMME_A, date(2025, 6, 30), signed=date(2025, 5, 20))

    expel(pupil, PROGRAMME_B, date(2025, 5, 31), signed=date(2025, 5, 25))

    assert pupil.status == "left"
    assert pupil.file_closed_on == date(2025, 6, 30)
    assert last_event(pupil).file_closed_on == date(2025, 6, 30)
    assert last_event(pupil).expelled_on == date(2025, 6, 30)


def test_expulsion_before_recorded_attestation_rejected():
    programme = new_programme()
    pupil = enrolled(programme.id)
    pupil.record_attestation(
        programme=programme,
        kind="intermediate",
        on=date(2024, 12, 20),
        scores=scores(),
        protocol=order("3", date(2024, 12, 20)),
    )

    with pytest.raises(RuleViolationError):
        expel(pupil, programme.id, date(2024, 12, 19), signed=date(2024, 12, 25))


# Re-admission


def left_pupil(last_day=date(2025, 5, 31)) -> Pupil:
    pupil = enrolled(PROGRAMME_A)
    expel(pupil, PROGRAMME_A, last_day)
    return pupil


def test_readmission_reopens_file():
    pupil = left_pupil()

    pupil.enrol(
        programme_id=PROGRAMME_B,
        effective_date=date(2027, 9, 1),
        order=order("7-у", date(2027, 8, 30)),
    )

    assert pupil.status == "enrolled"
    assert pupil.file_closed_on is None
    assert pupil.leaving_expulsion is None
    assert last_event(pupil).reopened_file is True


def test_readmission_into_same_programme_reopens_file():
    pupil = left_pupil()

    pupil.enrol(
        programme_id=PROGRAMME_A,
        effective_date=date(2025, 6, 1),
        order=order("7-у", date(2025, 6, 1)),
    )

    assert pupil.status == "enrolled"
    assert last_event(pupil).reopened_file is True


def test_readmission_before_last_expulsion_rejected():
    pupil = left_pupil(last_day=date(2025, 5, 31))

    with pytest.raises(RuleViolationError):
        pupil.enrol(
            programme_id=PROGRAMME_B,
            effective_date=date(2025, 5, 30),
            order=order("7-у", date(2025, 6, 2)),
        )
    assert pupil.status == "left"


def test_readmission_on_last_day_rejected():
    pupil = left_pupil(last_day=date(2025, 5, 31))

    with pytest.raises(RuleViolationError):
        pupil.enrol(
            programme_id=PROGRAMME_B,
            effective_date=date(2025, 5, 31),
            order=order("7-у", date(2025, 6, 2)),
        )


# Cancellation of an expulsion


def test_expulsion_cancellation_reactivates_enrolment():
    pupil = left_pupil()
    (enrolment,) = pupil.enrolments.values()
    expulsion = enrolment.expulsion

    pupil.cancel_expulsion(
        expulsion_id=expulsion.id,
        order=order("41-у", date(2025, 6, 3)),
        reason="ошибка в приказе",
    )

    assert enrolment.status == "active"
    assert enrolment.last_day is None
    assert expulsion.cancelled is True
    assert pupil.status == "enrolled"
    assert pupil.file_closed_on is None
    assert last_event(pupil).reopened_file is True


def test_expulsion_cancellation_with_file_open_does_not_reopen():
    pupil = enrolled(PROGRAMME_A, PROGRAMME_B)
    expulsion_id = expel(pupil, PROGRAMME_A, date(2024, 12, 20))

    pupil.cancel_expulsion(
        expulsion_id=expulsion_id,
        order=order("41-у", date(2024, 12, 23)),
        reason="ошибка",
    )

    assert last_event(pupil).reopened_file is False
    assert pupil.active_enrolment(PROGRAMME_A) is not None


def test_expulsion_cancelled_twice_rejected():
    pupil = left_pupil()
    (enrolment,) = pupil.enrolments.values()
    expulsion_id = enrolment.expulsion.id
    cancel = order("41-у", date(2025, 6, 3))
    pupil.cancel_expulsion(expulsion_id=expulsion_id, order=cancel, reason="ошибка")

    with pytest.raises(RuleViolationError):
        pupil.cancel_expulsion(expulsion_id=expulsion_id, order=cancel, reason="снова")


def test_expulsion_cancellation_after_reenrolment_rejected():
    pupil = left_pupil(last_day=date(2025, 5, 31))
    (enrolment,) = pupil.enrolments.values()
    expulsion_id = enrolment.expulsion.id
    pupil.enrol(
        programme_id=PROGRAMME_A,
        effective_date=date(2025, 9, 1),
        order=order("7-у", date(2025, 8, 29)),
    )

    with pytest.raises(RuleViolationError):
        pupil.cancel_expulsion(
            expulsion_id=expulsion_id,
            order=order("41-у", date(2025, 9, 3)),
            reason="ошибка",
        )
    assert enrolment.expulsion.cancelled is False


def test_expulsion_cancellation_after_other_programme_allowed():
    pupil = left_pupil(last_day=date(2025, 5, 31))
    (enrolment,) = pupil.enrolments.values()
    pupil.enrol(
        programme_id=PROGRAMME_B,
        effective_date=date(2025, 9, 1),
        order=order("7-у", date(2025, 8, 29)),
    )

    pupil.cancel_expulsion(
        expulsion_id=enrolment.expulsion.id,
        order=order("41-у", date(2025, 9, 3)),
        reason="ошибка",
    )

    assert enrolment.status == "active"
    assert last_event(pupil).reopened_file is False


def test_expulsion_cancellation_after_cancelled_reenrolment_allowed():
    pupil = left_pupil(last_day=date(2025, 5, 31))
    (first,) = pupil.enrolments.values()
    again = pupil.enrol(
        programme_id=PROGRAMME_A,
        effective_date=date(2025, 9, 1),
        order=order("7-у", date(2025, 8, 29)),
    )
    pupil.cancel_enrolment(
        enrolment_id=again, order=order("8-у", date(2025, 9, 2)), reason="ошибка"
    )

    pupil.cancel_expulsion(
        expulsion_id=first.expulsion.id,
        order=order("41-у", date(2025, 9, 3)),
        reason="ошибка",
    )

    assert first.status == "active"
    assert pupil.status == "enrolled"


def test_expulsion_cancellation_order_before_expulsion_order_rejected():
    pupil = left_pupil(last_day=date(2025, 5, 31))
    (enrolment,) = pupil.enrolments.values()

    with pytest.raises(RuleViolationError):
        pupil.cancel_expulsion(
            expulsion_id=enrolment.expulsion.id,
            order=order("41-у", date(2025, 5, 30)),
            reason="ошибка",
        )


def test_unknown_expulsion_cancellation_not_found():
    pupil = left_pupil()

    with pytest.raises(NotFoundError):
        pupil.cancel_expulsion(
            expulsion_id=uuid4(), order=order("41", date(2025, 6, 3)), reason="x"
        )


# Cancellation of an enrolment


def test_enrolment_cancellation_restores_registered():
    pupil = new_pupil()
    enrolment_id = pupil.enrol(
        programme_id=PROGRAMME_A, effective_date=SEPT_2, order=order("1", SEPT_2)
    )

    pupil.cancel_enrolment(
        enrolment_id=enrolment_id, order=order("2", SEPT_2), reason="ошибка"
    )

    event = last_event(pupil)
    assert pupil.enrolments[enrolment_id].status == "cancelled"
    assert pupil.status == "registered"
    assert pupil.file_closed_on is None
    assert event.left_centre is False
    assert event.file_closed_on is None
    assert event.expelled_on is None


def test_enrolment_cancellation_restores_earlier_closure():
    pupil = enrolled(PROGRAMME_A)
    expel(pupil, PROGRAMME_A, date(2025, 5, 31), signed=date(2025, 6, 4))
    readmission = pupil.enrol(
        programme_id=PROGRAMME_B,
        effective_date=date(2025, 9, 1),
        order=order("7-у", date(2025, 8, 29)),
    )

    pupil.cancel_enrolment(
        enrolment_id=readmission,
        order=order("8-у", date(2025, 9, 5)),
        reason="приказ издан ошибочно",
    )

    event = last_event(pupil)
    assert pupil.status == "left"
    assert pupil.file_closed_on == date(2025, 6, 4)
    assert event.left_centre is True
    assert event.file_closed_on == date(2025, 6, 4)
    assert event.expelled_on == date(2025, 5, 31)


def test_enrolment_cancellation_keeps_other_enrolment():
    pupil = enrolled(PROGRAMME_A)
    second = pupil.enrol(
        programme_id=PROGRAMME_B, effective_date=SEPT_2, order=order("2", SEPT_2)
    )

    pupil.cancel_enrolment(enrolment_id=second, order=order("3", SEPT_2), reason="x")

    assert pupil.status == "enrolled"
    assert last_event(pupil).left_centre is False


def test_enrolment_cancellation_after_attestation_rejected():
    programme = new_programme()
    pupil = enrolled(programme.id)
    (enrolment,) = pupil.enrolments.values()
    pupil.record_attestation(
        programme=programme,
        kind="intermediate",
        on=date(2024, 12, 20),
        scores=scores(),
        protocol=order("3", date(2024, 12, 20)),
    )

    with pytest.raises(RuleViolationError):
        pupil.cancel_enrolment(
            enrolment_id=enrolment.id, order=order("9", date(2025, 1, 9)), reason="x"
        )
    assert enrolment.status == "active"


def test_enrolment_cancellation_after_attendance_rejected():
    pupil = enrolled(PROGRAMME_A)
    (enrolment,) = pupil.enrolments.values()
    pupil.note_attendance(
        programme_id=PROGRAMME_A, day=date(2024, 9, 10), journal_id=uuid4()
    )

    with pytest.raises(RuleViolationError):
        pupil.cancel_enrolment(
            enrolment_id=enrolment.id, order=order("9", date(2024, 9, 11)), reason="x"
        )


def test_enrolment_cancellation_after_transfer_rejected():
    pupil = enrolled(PROGRAMME_A)
    (old,) = pupil.enrolments.values()
    new = pupil.transfer(
        from_programme_id=PROGRAMME_A,
        to_programme_id=PROGRAMME_B,
        effective_date=date(2025, 1, 13),
        order=order("5-п", date(2025, 1, 10)),
    )
    cancel = order("9", date(2025, 1, 14))

    with pytest.raises(RuleViolationError):
        pupil.cancel_enrolment(enrolment_id=old.id, order=cancel, reason="x")
    with pytest.raises(RuleViolationError):
        pupil.cancel_enrolment(enrolment_id=new, order=cancel, reason="x")


def test_expelled_enrolment_cancellation_rejected():
    pupil = left_pupil()
    (enrolment,) = pupil.enrolments.values()

    with pytest.raises(RuleViolationError):
        pupil.cancel_enrolment(
            enrolment_id=enrolment.id, order=order("9", date(2025, 6, 9)), reason="x"
        )


def test_enrolment_cancellation_order_before_enrolment_order_rejected():
    pupil = enrolled(PROGRAMME_A)
    (enrolment,) = pupil.enrolments.values()

    with pytest.raises(RuleViolationError):
        pupil.cancel_enrolment(
            enrolment_id=enrolment.id,
            order=order("9", SEPT_2 - timedelta(days=1)),
            reason="x",
        )


def test_unknown_enrolment_cancellation_not_found():
    pupil = enrolled(PROGRAMME_A)

    with pytest.raises(NotFoundError):
        pupil.cancel_enrolment(
            enrolment_id=uuid4(), order=order("9", SEPT_2), reason="x"
        )


# Transfers


def test_transfer_ends_old_enrolment_day_before():
    pupil = enrolled(PROGRAMME_A)
    (old,) = pupil.enrolments.values()

    new_id = pupil.transfer(
        from_programme_id=PROGRAMME_A,
        to_programme_id=PROGRAMME_B,
        effective_date=date(2025, 1, 13),
        order=order("5-п", date(2025, 1, 10)),
    )

    new = pupil.enrolments[new_id]
    assert old.status == "transferred"
    assert old.last_day == date(2025, 1, 12)
    assert new.status == "active"
    assert new.programme_id == PROGRAMME_B
    assert new.effective_date == date(2025, 1, 13)
    assert pupil.enrolment_on(PROGRAMME_A, date(2025, 1, 12)) is old
    assert pupil.enrolment_on(PROGRAMME_A, date(2025, 1, 13)) is None
    assert pupil.enrolment_on(PROGRAMME_B, date(2025, 1, 12)) is None
    assert pupil.enrolment_on(PROGRAMME_B, date(2025, 1, 13)) is new


def test_transfer_keeps_file_open():
    pupil = enrolled(PROGRAMME_A)

    pupil.transfer(
        from_programme_id=PROGRAMME_A,
        to_programme_id=PROGRAMME_B,
        effective_date=date(2025, 1, 13),
        order=order("5-п", date(2025, 1, 10)),
    )

    assert pupil.status == "enrolled"
    assert pupil.file_closed_on is None
    assert len(pupil.pending_events) == 3


def test_transfer_from_programme_not_attended_rejected():
    pupil = enrolled(PROGRAMME_A)

    with pytest.raises(RuleViolationError):
        pupil.transfer(
            from_programme_id=PROGRAMME_B,
            to_programme_id=uuid4(),
            effective_date=date(2025, 1, 13),
            order=order("5-п", date(2025, 1, 10)),
        )


def test_transfer_into_attended_programme_rejected():
    pupil = enrolled(PROGRAMME_A, PROGRAMME_B)

    with pytest.raises(RuleViolationError):
        pupil.transfer(
            from_programme_id=PROGRAMME_A,
            to_programme_id=PROGRAMME_B,
            effective_date=date(2025, 1, 13),
            order=order("5-п", date(2025, 1, 10)),
        )


def test_transfer_within_one_programme_rejected():
    pupil = enrolled(PROGRAMME_A)

    with pytest.raises(RuleViolationError):
        pupil.transfer(
            from_programme_id=PROGRAMME_A,
            to_programme_id=PROGRAMME_A,
            effective_date=date(2025, 1, 13),
            order=order("5-п", date(2025, 1, 10)),
        )


def test_transfer_on_enrolment_effective_date_rejected():
    pupil = enrolled(PROGRAMME_A)

    with pytest.raises(RuleViolationError):
        pupil.transfer(
            from_programme_id=PROGRAMME_A,
            to_programme_id=PROGRAMME_B,
            effective_date=SEPT_2,
            order=order("5-п", SEPT_2),
        )


def test_transfer_before_recorded_attestation_rejected():
    programme = new_programme()
    pupil = enrolled(programme.id)
    pupil.record_attestation(
        programme=programme,
        kind="intermediate",
        on=date(2025, 1, 13),
        scores=scores(),
        protocol=order("3", date(2025, 1, 13)),
    )

    with pytest.raises(RuleViolationError):
        pupil.transfer(
            from_programme_id=programme.id,
            to_programme_id=PROGRAMME_B,
            effective_date=date(2025, 1, 13),
            order=order("5-п", date(2025, 1, 14)),
        )


# Attestation


def attest(pupil, programme, on, result=None):
    return pupil.record_attestation(
        programme=programme,
        kind="intermediate",
        on=on,
        scores=result or scores(),
        protocol=order("3", on),
    )


def test_attestation_inside_enrolment_recorded():
    programme = new_programme()
    pupil = enrolled(programme.id)

    attestation_id = attest(pupil, programme, date(2024, 12, 20), scores(7, 4, 3))

    attestation = pupil.attestations[attestation_id]
    assert attestation.total == 14
    assert attestation.max_total == 25
    assert attestation.level == "high"
    assert attestation.thresholds == {"high": "0.56", "medium": "0.3"}
    assert attestation.corrected is False


def test_attestation_on_enrolment_first_day_recorded():
    programme = new_programme()
    pupil = enrolled(programme.id)

    attest(pupil, programme, SEPT_2)

    assert len(pupil.attestations) == 1


def test_attestation_before_enrolment_rejected():
    programme = new_programme()
    pupil = enrolled(programme.id)

    with pytest.raises(RuleViolationError):
        attest(pupil, programme, SEPT_2 - timedelta(days=1))


def test_attestation_without_enrolment_rejected():
    programme = new_programme()
    pupil = enrolled(PROGRAMME_A)

    with pytest.raises(RuleViolationError):
        attest(pupil, programme, date(2024, 12, 20))


def test_attestation_on_last_day_recorded():
    programme = new_programme()
    pupil = enrolled(programme.id)
    expel(pupil, programme.id, date(2025, 5, 30), signed=date(2025, 5, 30))

    attest(pupil, programme, date(2025, 5, 30))

    assert len(pupil.attestations) == 1


def test_attestation_after_last_day_rejected():
    programme = new_programme()
    pupil = enrolled(programme.id)
    expel(pupil, programme.id, date(2025, 5, 30))

    with pytest.raises(RuleViolationError):
        attest(pupil, programme, date(2025, 5, 31))


def test_attestation_after_transfer_in_old_programme_rejected():
    programme = new_programme()
    pupil = enrolled(programme.id)
    pupil.transfer(
        from_programme_id=programme.id,
        to_programme_id=PROGRAMME_B,
        effective_date=date(2025, 1, 13),
        order=order("5-п", date(2025, 1, 10)),
    )

    attest(pupil, programme, date(2025, 1, 12))
    with pytest.raises(RuleViolationError):
        attest(pupil, programme, date(2025, 1, 13))


def test_attestation_in_cancelled_enrolment_rejected():
    programme = new_programme()
    pupil = new_pupil()
    enrolment_id = pupil.enrol(
        programme_id=programme.id, effective_date=SEPT_2, order=order("1", SEPT_2)
    )
    pupil.cancel_enrolment(
        enrolment_id=enrolment_id, order=order("2", SEPT_2), reason="x"
    )

    with pytest.raises(RuleViolationError):
        attest(pupil, programme, date(2024, 12, 20))


def test_attestation_with_unknown_kind_rejected():
    programme = new_programme()
    pupil = enrolled(programme.id)

    with pytest.raises(ValueError):
        pupil.record_attestation(
            programme=programme,
            kind="annual",
            on=date(2024, 12, 20),
            scores=scores(),
            protocol=order("3", date(2024, 12, 20)),
        )


def test_attestation_with_invalid_scores_rejected():
    programme = new_programme()
    pupil = enrolled(programme.id)

    with pytest.raises(InvalidFieldError) as raised:
        attest(pupil, programme, date(2024, 12, 20), scores(11, 4, 3))

    assert set(raised.value.errors) == {"scores.attention"}
    assert pupil.attestations == {}


def test_attestation_correction_recomputes_level():
    programme = new_programme()
    pupil = enrolled(programme.id)
    attestation_id = attest(pupil, programme, date(2024, 12, 20), scores(7, 4, 3))

    pupil.correct_attestation(
        attestation_id=attestation_id,
        programme=programme,
        scores=scores(2, 4, 1),
        reason="ошибка подсчёта",
    )

    attestation = pupil.attestations[attestation_id]
    assert attestation.total == 7
    assert attestation.level == "low"
    assert attestation.corrected is True
    assert last_event(pupil).reason == "ошибка подсчёта"


def test_attestation_correction_without_change_rejected():
    programme = new_programme()
    pupil = enrolled(programme.id)
    attestation_id = attest(pupil, programme, date(2024, 12, 20), scores(7, 4, 3))

    with pytest.raises(RuleViolationError):
        pupil.correct_attestation(
            attestation_id=attestation_id,
            programme=programme,
            scores=scores(7, 4, 3),
            reason="x",
        )


def test_attestation_correction_with_invalid_scores_rejected():
    programme = new_programme()
    pupil = enrolled(programme.id)
    attestation_id = attest(pupil, programme, date(2024, 12, 20))

    with pytest.raises(InvalidFieldError):
        pupil.correct_attestation(
            attestation_id=attestation_id,
            programme=programme,
            scores={"attention": 1, "memory": 1},
            reason="x",
        )
    assert pupil.attestations[attestation_id].corrected is False


# Attendance


def test_attendance_outside_enrolment_rejected():
    pupil = enrolled(PROGRAMME_A, on=date(2024, 10, 1))

    with pytest.raises(RuleViolationError):
        pupil.note_attendance(
            programme_id=PROGRAMME_A, day=date(2024, 9, 30), journal_id=uuid4()
        )


def test_attendance_marks_enrolment_once():
    pupil = enrolled(PROGRAMME_A)
    journal_id = uuid4()

    pupil.note_attendance(programme_id=PROGRAMME_A, day=SEPT_2, journal_id=journal_id)
    pupil.note_attendance(
        programme_id=PROGRAMME_A, day=date(2024, 9, 9), journal_id=journal_id
    )

    began = [e for e in pupil.pending_events if isinstance(e, Pupil.AttendanceBegan)]
    assert len(began) == 1


def test_attendance_begins_once_per_journal():
    pupil = enrolled(PROGRAMME_A)
    group_journal, individual_journal = uuid4(), uuid4()

    for journal_id in (group_journal, individual_journal, group_journal):
        pupil.note_attendance(
            programme_id=PROGRAMME_A, day=date(2024, 9, 9), journal_id=journal_id
        )

    began = [e for e in pupil.pending_events if isinstance(e, Pupil.AttendanceBegan)]
    assert [e.journal_id for e in began] == [group_journal, individual_journal]
    enrolment = pupil.active_enrolment(PROGRAMME_A)
    assert enrolment.journal_ids == [group_journal, individual_journal]


def test_attendance_outside_enrolment_names_pupil_and_day():
    pupil = enrolled(PROGRAMME_A, on=date(2024, 10, 1))

    with pytest.raises(NotEnrolledError) as raised:
        pupil.note_attendance(
            programme_id=PROGRAMME_A, day=date(2024, 9, 30), journal_id=uuid4()
        )

    assert raised.value.pupil_id == pupil.id
    assert str(pupil.id) in str(raised.value)
    assert "2024-09-30" in str(raised.value)


# Attendance after the last day


def attended(journal_id, day=date(2025, 9, 10)):
    """Return a pupil enrolled from 2025-09-02 and listed at a session on `day`."""
    pupil = new_pupil(opened_on=date(2025, 8, 26))
    pupil.enrol(
        programme_id=PROGRAMME_A,
        effective_date=date(2025, 9, 2),
        order=order("1-у", date(2025, 9, 2)),
    )
    pupil.note_attendance(programme_id=PROGRAMME_A, day=day, journal_id=journal_id)
    return pupil


def test_expulsion_before_attended_session_rejected():
    journal_id = uuid4()
    pupil = attended(journal_id)

    with pytest.raises(RuleViolationError) as raised:
        pupil.expel(
            programme_id=PROGRAMME_A,
            effective_date=date(2025, 9, 5),
            ground="parents_request",
            ground_detail=None,
            order=order("40-у", date(2025, 9, 12)),
            latest_sessions={journal_id: date(2025, 9, 10)},
        )

    assert "2025-09-10" in str(raised.value)
    assert str(journal_id) in str(raised.value)
    assert pupil.status == "enrolled"


def test_expulsion_on_last_attended_session_allowed():
    journal_id = uuid4()
    pupil = attended(journal_id)

    pupil.expel(
        programme_id=PROGRAMME_A,
        effective_date=date(2025, 9, 10),
        ground="parents_request",
        ground_detail=None,
        order=order("40-у", date(2025, 9, 12)),
        latest_sessions={journal_id: date(2025, 9, 10)},
    )

    assert pupil.status == "left"


def test_expulsion_ignores_journals_of_other_enrolments():
    pupil = attended(uuid4())

    pupil.expel(
        programme_id=PROGRAMME_A,
        effective_date=date(2025, 9, 5),
        ground="parents_request",
        ground_detail=None,
        order=order("40-у", date(2025, 9, 12)),
        latest_sessions={uuid4(): date(2025, 9, 10)},
    )

    assert pupil.status == "left"


def test_transfer_before_attended_session_rejected():
    journal_id = uuid4()
    pupil = attended(journal_id, day=date(2025, 10, 5))

    with pytest.raises(RuleViolationError) as raised:
        pupil.transfer(
            from_programme_id=PROGRAMME_A,
            to_programme_id=PROGRAMME_B,
            effective_date=date(2025, 10, 1),
            order=order("5-п", date(2025, 10, 1)),
            latest_sessions={journal_id: date(2025, 10, 5)},
        )

    assert "2025-10-05" in str(raised.value)


def test_transfer_day_after_attended_session_allowed():
    journal_id = uuid4()
    pupil = attended(journal_id, day=date(2025, 10, 5))

    pupil.transfer(
        from_programme_id=PROGRAMME_A,
        to_programme_id=PROGRAMME_B,
        effective_date=date(2025, 10, 6),
        order=order("5-п", date(2025, 10, 6)),
        latest_sessions={journal_id: date(2025, 10, 5)},
    )

    assert pupil.active_enrolment(PROGRAMME_B) is not None


# Dates checked against each other


@pytest.mark.parametrize(
    ("birth_date", "opened_on", "path"),
    [
        (date(1, 1, 1), date(2024, 8, 26), "birth_date"),
        (date(1899, 12, 31), date(2024, 8, 26), "birth_date"),
        (date(1900, 1, 1), date(1900, 1, 1), "opened_on"),
    ],
)
def test_registration_with_impossible_dates_rejected(birth_date, opened_on, path):
    with pytest.raises(InvalidFieldError) as raised:
        new_pupil(birth_date=birth_date, opened_on=opened_on)

    assert path in raised.value.errors


def test_registration_has_no_age_limit():
    # Records of former pupils are entered after the fact, so a file may be
    # opened when the person is already grown up.
    pupil = new_pupil(birth_date=date(1990, 1, 1), opened_on=date(2024, 8, 26))

    assert pupil.status == "registered"


@pytest.mark.parametrize(
    ("effective_date", "signed_on", "path"),
    [
        (date(1, 1, 1), SEPT_2, "effective_date"),
        (SEPT_2, date(1, 1, 1), "order.date"),
        (date(1989, 12, 31), SEPT_2, "effective_date"),
    ],
)
def test_enrolment_with_dates_before_records_rejected(effective_date, signed_on, path):
    pupil = new_pupil()

    with pytest.raises(InvalidFieldError) as raised:
        pupil.enrol(
            programme_id=PROGRAMME_A,
            effective_date=effective_date,
            order=order("1-у", signed_on),
        )

    assert set(raised.value.errors) == {path}


def test_enrolment_before_birth_rejected():
    pupil = new_pupil(opened_on=date(2024, 8, 26))

    with pytest.raises(RuleViolationError) as raised:
        pupil.enrol(
            programme_id=PROGRAMME_A,
            effective_date=date(2015, 4, 2),
            order=order("1-у", SEPT_2),
        )

    assert "birth date (2015-04-03)" in str(raised.value)
    assert pupil.enrolments == {}


def test_enrolment_before_file_was_opened_allowed():
    # A file opened today may hold the enrolments of earlier years.
    pupil = new_pupil(opened_on=date(2024, 8, 26))

    pupil.enrol(
        programme_id=PROGRAMME_A,
        effective_date=date(2023, 9, 1),
        order=order("1-у", date(2023, 9, 1)),
    )

    assert pupil.status == "enrolled"


def test_expulsion_order_before_enrolment_order_rejected():
    pupil = enrolled(PROGRAMME_A)

    with pytest.raises(RuleViolationError) as raised:
        expel(pupil, PROGRAMME_A, date(2025, 5, 30), signed=date(2024, 9, 1))

    assert "2024-09-02" in str(raised.value)


def test_expulsion_order_on_enrolment_order_day_allowed():
    pupil = enrolled(PROGRAMME_A)

    expel(pupil, PROGRAMME_A, date(2025, 5, 30), signed=SEPT_2)

    assert pupil.status == "left"


def test_transfer_order_before_enrolment_order_rejected():
    pupil = enrolled(PROGRAMME_A)

    with pytest.raises(RuleViolationError):
        pupil.transfer(
            from_programme_id=PROGRAMME_A,
            to_programme_id=PROGRAMME_B,
            effective_date=date(2025, 1, 13),
            order=order("5-п", date(2024, 9, 1)),
        )


def test_expulsion_effective_before_records_rejected():
    pupil = enrolled(PROGRAMME_A)

    with pytest.raises(InvalidFieldError) as raised:
        expel(pupil, PROGRAMME_A, date(1, 1, 1), signed=date(2025, 5, 30))

    assert set(raised.value.errors) == {"effective_date"}


def test_attestation_protocol_before_attestation_rejected():
    programme = new_programme()
    pupil = enrolled(programme.id)

    with pytest.raises(InvalidFieldError) as raised:
        pupil.record_attestation(
            programme=programme,
            kind="intermediate",
            on=date(2024, 12, 20),
            scores=scores(),
            protocol=order("3", date(2024, 12, 19)),
        )

    assert set(raised.value.errors) == {"protocol.date"}


# Destruction of a file that was never closed


def test_destruction_of_registered_file_explains_closure():
    pupil = new_pupil()

    with pytest.raises(RuleViolationError) as raised:
        pupil.destroy_personal_data(
            act=order("1-ЭК", date(2025, 1, 10)),
            reason="ошибочная регистрация",
            destroyed_at=datetime(2025, 1, 10, 9, tzinfo=UTC),
        )

    message = str(raised.value)
    assert "registered" in message
    assert "never closed" in message
    assert "expulsion ends their last programme" in message


def test_destruction_of_enrolled_file_counts_programmes():
    pupil = enrolled(PROGRAMME_A, PROGRAMME_B)

    with pytest.raises(RuleViolationError) as raised:
        pupil.destroy_personal_data(
            act=order("1-ЭК", date(2025, 1, 10)),
            reason="ошибка",
            destroyed_at=datetime(2025, 1, 10, 9, tzinfo=UTC),
        )

    assert "enrolled in 2 programme(s)" in str(raised.value)
