"""The records mapper: personal fields sealed with each pupil's own key."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from typing import Any

import pytest
from eventsourcing.domain import Snapshot
from eventsourcing.persistence import MapperDeserialisationError, StoredEvent
from eventsourcing.utils import register_topic

from services.records.application import RecordsApplication
from services.records.domain.pupils import Pupil
from services.records.sealing import PUPIL_SEALED_FIELDS, SEALED, SealingError
from shared.actor import acting_as
from tests.conftest import REGISTRAR
from tests.records_helpers import (
    create_programme,
    enrol,
    expel,
    open_journal,
    order,
    record_session,
    register_pupil,
    scores,
)

SURNAME = "Шкуропатская"
NAME = "Евлампия"
PATRONYMIC = "Феоктистовна"
BIRTH = date(2014, 11, 23)


@pytest.fixture
def app():
    application = RecordsApplication("memory://")
    yield application
    application.close()


@pytest.fixture
def story(app) -> dict[str, Any]:
    """A pupil with every kind of personal field, and a classmate."""
    with acting_as(REGISTRAR):
        programme_id = create_programme(app)
        pupil_id = register_pupil(app, SURNAME, NAME, PATRONYMIC, BIRTH)
        classmate_id = register_pupil(app, "Иванов", "Пётр", None, date(2015, 1, 1))
        for someone in (pupil_id, classmate_id):
            enrol(app, someone, programme_id)
        journal_id = open_journal(app, programme_id)
        record_session(
            app,
            journal_id,
            date(2024, 9, 9),
            {pupil_id: "excused", classmate_id: "present"},
        )
        attestation = app.record_attestation(
            pupil_id,
            programme_id=programme_id,
            kind="intermediate",
            on=date(2024, 12, 20),
            scores=scores(9, 8, 4),
            protocol=order("3-п", date(2024, 12, 20)),
        )
        app.correct_attestation(
            pupil_id,
            attestation.resource["id"],
            scores=scores(9, 7, 4),
            reason="описка в протоколе Шкуропатской",
        )
        expel(app, pupil_id, programme_id, date(2025, 3, 31), "other", "переезд в Кемь")
    return {
        "pupil_id": pupil_id,
        "classmate_id": classmate_id,
        "journal_id": journal_id,
    }


def stored(app: RecordsApplication) -> list[Any]:
    return list(app.recorder.select_notifications(start=None, limit=1000))


def state(notification: Any) -> dict[str, Any]:
    return dict(json.loads(notification.state))


def by_topic(app: RecordsApplication, topic: str) -> list[Any]:
    return [n for n in stored(app) if n.topic == topic]


def test_stored_state_hides_personal_fields(app, story):
    text = b"".join(n.state for n in stored(app)).decode("utf-8")

    for secret in (SURNAME, NAME, PATRONYMIC, "2014-11-23", "Кемь", "описка"):
        assert secret not in text, secret


@pytest.mark.parametrize(
    "topic",
    [topic for topic, fields in PUPIL_SEALED_FIELDS.items() if fields],
)
def test_sealed_fields_absent_from_state(app, story, topic):
    for notification in by_topic(app, topic):
        fields = state(notification)

        assert SEALED in fields
        for name in PUPIL_SEALED_FIELDS[topic]:
            assert name not in fields, (topic, name)


def test_envelope_stays_readable(app, story):
    (expelled,) = by_topic(app, Pupil.Expelled.TOPIC)
    fields = state(expelled)

    assert fields["ground"] == "other"
    assert fields["effective_date"] == {"_type_": "date_iso", "_data_": "2025-03-31"}
    assert fields["actor"]["name"] == REGISTRAR.name
    assert "timestamp" in fields


def test_attendance_status_sealed_per_line(app, story):
    (session,) = by_topic(app, "records:Journal.SessionRecorded")
    lines = state(session)["attendance"]

    assert [set(line) for line in lines] == [{"pupil_id", SEALED}] * 2
    assert lines[0][SEALED] != lines[1][SEALED]


def session_lines(app: RecordsApplication) -> list[dict[str, Any]]:
    """Return the decoded attendance lines of the one recorded session."""
    (session,) = by_topic(app, "records:Journal.SessionRecorded")
    return list(app.mapper.to_domain_event(session).attendance)


def test_round_trip_restores_fields(app, story):
    pupil = app.pupil(story["pupil_id"])

    assert (pupil.surname, pupil.name, pupil.patronymic) == (
        SURNAME,
        NAME,
        PATRONYMIC,
    )
    assert pupil.birth_date == BIRTH
    (attestation,) = pupil.attestations.values()
    assert attestation.scores == scores(9, 7, 4)
    assert attestation.total == 20
    assert [line["status"] for line in session_lines(app)] == ["excused", "present"]


def test_destroyed_key_decodes_as_none(app, story):
    app.key_ring.destroy(story["pupil_id"])

    events = [app.mapper.to_domain_event(n) for n in stored(app)]

    (registered,) = [
        e
        for e in events
        if isinstance(e, Pupil.Registered) and e.originator_id == story["pupil_id"]
    ]
    assert registered.surname is None
    assert registered.birth_date is None
    assert registered.opened_on == date(2024, 8, 26)
    (corrected,) = [e for e in events if isinstance(e, Pupil.AttestationCorrected)]
    assert (corrected.scores, corrected.total, corrected.level, corrected.reason) == (
        None,
        None,
        None,
        None,
    )
    (expelled,) = [e for e in events if isinstance(e, Pupil.Expelled)]
    assert expelled.ground_detail is None
    assert expelled.ground == "other"


def test_destroyed_key_blanks_only_own_lines(app, story):
    app.key_ring.destroy(story["pupil_id"])

    lines = session_lines(app)

    assert lines == [
        {"pupil_id": story["pupil_id"], "status": None},
        {"pupil_id": story["classmate_id"], "status": "present"},
    ]
    assert app.pupil(story["classmate_id"]).surname == "Иванов"


def test_blob_moved_between_events_rejected(app, story):
    recorded, corrected = (
        by_topic(app, Pupil.AttestationRecorded.TOPIC)[0],
        by_topic(app, Pupil.AttestationCorrected.TOPIC)[0],
    )
    forged = state(corrected)
    forged[SEALED] = state(recorded)[SEALED]
    tampered = StoredEvent(
        originator_id=corrected.originator_id,
        originator_version=corrected.originator_version,
        topic=corrected.topic,
        state=json.dumps(forged).encode(),
    )

    with pytest.raises(MapperDeserialisationError, match="fail authentication"):
        app.mapper.to_domain_event(tampered)


def test_line_moved_to_other_pupil_rejected(app, story):
    (session,) = by_topic(app, "records:Journal.SessionRecorded")
    forged = state(session)
    first, second = forged["attendance"]
    first[SEALED], second[SEALED] = second[SEALED], first[SEALED]
    tampered = replace(
        StoredEvent(
            session.originator_id, session.originator_version, session.topic, b""
        ),
        state=json.dumps(forged).encode(),
    )

    with pytest.raises(MapperDeserialisationError, match="fail authentication"):
        app.mapper.to_domain_event(tampered)


class Nicknamed(Pupil.Event):
    """An event of the pupil's stream that the mapper has no rule for."""

    TOPIC = "tests:Pupil.Nicknamed"
    nickname: str


register_topic(Nicknamed.TOPIC, Nicknamed)


def test_unlisted_pupil_event_refused(app, story):
    pupil = app.pupil(story["pupil_id"])
    with acting_as(REGISTRAR):
        pupil.trigger_event(Nicknamed, nickname="Лампа")

    with pytest.raises(SealingError, match="PUPIL_SEALED_FIELDS"):
        app.save(pupil)


def test_pupil_snapshot_refused(app, story):
    pupil = app.pupil(story["pupil_id"])

    with pytest.raises(SealingError, match="snapshots"):
        app.mapper.to_stored_event(Snapshot.take(pupil))


def test_every_pupil_event_classified():
    events = {
        value.TOPIC
        for value in vars(Pupil).values()
        if isinstance(value, type) and issubclass(value, Pupil.Event)
        if value not in (Pupil.Event, Pupil.Created)
    }

    assert events == set(PUPIL_SEALED_FIELDS)
