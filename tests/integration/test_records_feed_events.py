"""The public event feed: CloudEvents fields, positions, filters, minimal data."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from services.records.feed import PUBLIC_TYPES, has_public_event_after, read_feed
from tests.records_helpers import (
    PEOPLE,
    create_programme,
    enrol,
    expel,
    order,
    populate,
    register_pupil,
    scores,
)

pytestmark = pytest.mark.usefixtures("principal")

DATA_FIELDS = {
    "pupil.registered": {"pupil_id", "opened_on"},
    "pupil.enrolled": {
        "pupil_id",
        "programme_id",
        "enrolment_id",
        "effective_date",
        "order",
        "reopened_file",
    },
    "pupil.enrolment_cancelled": {"pupil_id", "enrolment_id", "order", "left_centre"},
    "pupil.transferred": {
        "pupil_id",
        "from_programme_id",
        "from_enrolment_id",
        "to_programme_id",
        "enrolment_id",
        "effective_date",
        "order",
    },
    "pupil.expelled": {
        "pupil_id",
        "programme_id",
        "expulsion_id",
        "effective_date",
        "ground",
        "order",
        "left_centre",
    },
    "pupil.expulsion_cancelled": {"pupil_id", "expulsion_id", "order", "reopened_file"},
    "journal.opened": {"journal_id", "programme_id", "academic_year"},
    "journal.closed": {"journal_id", "closed_on"},
}
PRIVATE_KEYS = {
    "surname",
    "name",
    "patronymic",
    "birth_date",
    "scores",
    "total",
    "level",
    "attendance",
    "reason",
}


@pytest.fixture
def centre(records_app):
    return populate(records_app)


def whole_feed(app, limit=1000, types=()):
    return read_feed(app, after=0, limit=limit, types=types)["events"]


def keys_in(value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from keys_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from keys_in(item)


# CloudEvents


def test_events_are_cloudevents(records_app, centre):
    events = whole_feed(records_app)

    assert events
    for event in events:
        assert event["specversion"] == "1.0"
        assert event["source"]
        assert event["type"] in PUBLIC_TYPES
        assert event["sequence"] == str(event["position"])
        assert isinstance(event["position"], int)
        assert event["time"].endswith("Z")
        moment = datetime.fromisoformat(event["time"].replace("Z", "+00:00"))
        assert moment.utcoffset() == UTC.utcoffset(None)
    assert len({event["id"] for event in events}) == len(events)


def test_subject_names_pupil_or_journal(records_app, centre):
    for event in whole_feed(records_app):
        data = event["data"]
        if event["type"].startswith("pupil."):
            assert event["subject"] == f"pupils/{data['pupil_id']}"
        else:
            assert event["subject"] == f"journals/{data['journal_id']}"


def test_events_in_position_order(records_app, centre):
    positions = [event["position"] for event in whole_feed(records_app)]

    assert positions == sorted(set(positions))
    assert positions[-1] <= records_app.head_position()


def test_every_public_type_carries_its_data(records_app, centre):
    events = whole_feed(records_app)

    seen = {event["type"] for event in events}
    assert seen == set(DATA_FIELDS)
    for event in events:
        assert set(event["data"]) >= DATA_FIELDS[event["type"]], event["type"]


def test_expulsion_event_data(records_app, centre):
    vera = str(centre.pupils["vera"])
    events = whole_feed(records_app, types=["pupil.expelled"])

    expulsions = [e["data"] for e in events if e["data"]["pupil_id"] == vera]
    assert [data["left_centre"] for data in expulsions] == [True, True]
    final = expulsions[-1]
    assert final["effective_date"] == "2025-03-31"
    assert final["ground"] == "other"
    assert final["order"] == {"number": "40-у", "date": "2025-03-31"}
    assert final["programme_id"] == str(centre.programmes["psy"])


def test_expulsion_from_one_of_two_not_leaving(records_app, centre):
    events = whole_feed(records_app, types=["pupil.expelled"])

    (data,) = [
        e["data"]
        for e in events
        if e["data"]["pupil_id"] == str(centre.pupils["maria"])
    ]
    assert data["left_centre"] is False


def test_readmission_event_reopens_file(records_app):
    programme_id = create_programme(records_app)
    pupil_id = register_pupil(records_app)
    enrol(records_app, pupil_id, programme_id, date(2024, 9, 2))
    expel(records_app, pupil_id, programme_id, date(2024, 12, 27), "parents_request")
    enrol(records_app, pupil_id, programme_id, date(2025, 9, 1))

    events = whole_feed(records_app, types=["pupil.enrolled"])

    assert [e["data"]["reopened_file"] for e in events] == [False, True]


def test_cancelled_readmission_restores_closure(records_app):
    programme_id = create_programme(records_app)
    pupil_id = register_pupil(records_app)
    enrol(records_app, pupil_id, programme_id, date(2024, 9, 2))
    records_app.expel(
        pupil_id,
        programme_id=programme_id,
        effective_date=date(2025, 12, 31),
        ground="completed",
        ground_detail=None,
        order=order("40-у", date(2026, 1, 12)),
    )
    enrolment_id = enrol(records_app, pupil_id, programme_id, date(2026, 2, 2))
    records_app.cancel_enrolment(
        pupil_id,
        enrolment_id,
        order=order("9-у", date(2026, 2, 3)),
        reason="ошибка",
    )

    (event,) = whole_feed(records_app, types=["pupil.enrolment_cancelled"])

    assert event["data"]["left_centre"] is True
    assert event["data"]["file_closed_on"] == "2026-01-12"
    assert event["data"]["expelled_on"] == "2025-12-31"


def test_journal_event_data(records_app, centre):
    psy = str(centre.journals["psy"])
    opened = whole_feed(records_app, types=["journal.opened"])
    (closed,) = whole_feed(records_app, types=["journal.closed"])

    (psy_opened,) = [e for e in opened if e["data"]["journal_id"] == psy]
    assert len(opened) == len(centre.journals)
    assert psy_opened["data"]["academic_year"] == {
        "start": "2024-09-02",
        "end": "2025-05-31",
    }
    assert psy_opened["data"]["programme_id"] == str(centre.programmes["psy"])
    assert closed["subject"] == f"journals/{psy}"
    assert closed["data"] == {"journal_id": psy, "closed_on": "2025-05-30"}


# Confidentiality


def test_public_events_carry_no_personal_data(records_app, centre):
    events = whole_feed(records_app)

    text = json.dumps(events, ensure_ascii=False)
    for surname, name, patronymic, born in PEOPLE.values():
        for word in (surname, name, patronymic):
            if word:
                assert word not in text
        assert born.isoformat() not in text
    for event in events:
        assert not PRIVATE_KEYS & set(keys_in(event["data"])), event["type"]


def test_attestations_not_published(records_app, centre):
    head = records_app.head_position()
    attestation = records_app.record_attestation(
        centre.pupils["maria"],
        programme_id=centre.programmes["psy"],
        kind="final",
        on=date(2025, 5, 20),
        scores=scores(9, 9, 4),
        protocol=order("11-п", date(2025, 5, 20)),
    )

    feed = read_feed(records_app, after=head, limit=100)

    assert attestation.position > head
    assert feed["events"] == []
    assert feed["last_position"] == attestation.position


# Positions


def test_full_page_ends_at_last_event(records_app, centre):
    feed = read_feed(records_app, after=0, limit=3)

    assert len(feed["events"]) == 3
    assert feed["last_position"] == feed["events"][-1]["position"]
    assert feed["head_position"] == records_app.head_position()


def test_partial_page_ends_at_head(records_app, centre):
    head = records_app.head_position()

    feed = read_feed(records_app, after=0, limit=1000)

    assert len(feed["events"]) < 1000
    assert feed["last_position"] == head
    assert feed["head_position"] == head


def test_page_after_head_is_empty(records_app, centre):
    head = records_app.head_position()

    feed = read_feed(records_app, after=head, limit=10)

    assert feed["events"] == []
    assert feed["last_position"] == head


def test_page_after_future_position_keeps_after(records_app, centre):
    head = records_app.head_position()

    feed = read_feed(records_app, after=head + 5, limit=10)

    assert feed["events"] == []
    assert feed["last_position"] == head + 5


def test_empty_store_feed(records_app):
    feed = read_feed(records_app, after=0, limit=10)

    assert feed == {"events": [], "last_position": 0, "head_position": 0}


def test_private_events_at_head_passed(records_app):
    # Creating a programme writes the programme and the claim on its code.
    # Neither is public, so the page is empty but the position moves past both.
    create_programme(records_app)

    feed = read_feed(records_app, after=0, limit=10)

    assert feed["events"] == []
    assert feed["last_position"] == records_app.head_position() == 2


def test_type_filter_moves_past_other_events(records_app, centre):
    head = records_app.head_position()

    feed = read_feed(records_app, after=0, limit=100, types=["pupil.transferred"])

    (event,) = feed["events"]
    assert event["type"] == "pupil.transferred"
    assert event["data"]["pupil_id"] == str(centre.pupils["gleb"])
    assert feed["last_position"] == head


def test_type_filter_full_page_ends_at_event(records_app, centre):
    feed = read_feed(records_app, after=0, limit=2, types=["pupil.registered"])

    assert [e["type"] for e in feed["events"]] == ["pupil.registered"] * 2
    assert feed["last_position"] == feed["events"][-1]["position"]


def test_type_without_stored_events_passes_head(records_app, centre):
    feed = read_feed(
        records_app, after=0, limit=10, types=["pupil.personal_data_destroyed"]
    )

    assert feed["events"] == []
    assert feed["last_position"] == records_app.head_position()


@pytest.mark.parametrize("limit", [1, 4, 1000])
def test_following_last_position_reads_each_event_once(records_app, centre, limit):
    expected = whole_feed(records_app)
    after, seen = 0, []

    while True:
        feed = read_feed(records_app, after=after, limit=limit)
        seen.extend(feed["events"])
        assert feed["last_position"] >= after
        if feed["last_position"] == after:
            break
        after = feed["last_position"]

    assert seen == expected
    assert after == records_app.head_position()


def test_public_event_after_position_detected(records_app, centre):
    head = records_app.head_position()
    last_expulsion = whole_feed(records_app, types=["pupil.expelled"])[-1]

    assert has_public_event_after(records_app, 0)
    assert not has_public_event_after(records_app, head)
    assert has_public_event_after(
        records_app, last_expulsion["position"] - 1, ["pupil.expelled"]
    )
    assert not has_public_event_after(
        records_app, last_expulsion["position"], ["pupil.expelled"]
    )
