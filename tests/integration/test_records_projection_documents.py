"""Read models built by the projector: personal files, lists, history, journals."""

from __future__ import annotations

from datetime import date

import pytest

from services.records.domain.names import normalised_full_name
from services.records.projector import RecordsProjector
from services.records.readmodels import RecordsReadModels
from shared.actor import Principal, acting_as
from tests.records_helpers import (
    PEOPLE,
    create_programme,
    enrol,
    order,
    populate,
    register_pupil,
    scores,
)

pytestmark = pytest.mark.usefixtures("principal")

METHODIST = Principal(token_id="token-methodist", name="Козлова Вера", role="methodist")


@pytest.fixture
def read_models(records_app, records_engine):
    """Return a function that brings the read models up to date and returns them."""
    projector = RecordsProjector(records_app, records_engine)

    def caught_up():
        projector.catch_up()
        return RecordsReadModels(records_engine)

    return caught_up


@pytest.fixture
def centre(records_app):
    return populate(records_app)


# The personal file


def test_personal_file_has_every_field(records_app, read_models, centre):
    file = read_models().personal_file(centre.pupils["maria"])

    assert set(file) >= {
        "id",
        "surname",
        "name",
        "patronymic",
        "birth_date",
        "status",
        "file_opened_on",
        "file_closed_on",
        "enrolments",
        "attestations",
        "attendance",
        "version",
    }
    for enrolment in file["enrolments"]:
        assert set(enrolment) >= {
            "id",
            "programme_id",
            "effective_date",
            "order",
            "status",
            "expulsion",
        }
    for attestation in file["attestations"]:
        assert set(attestation) >= {
            "id",
            "programme_id",
            "kind",
            "date",
            "scores",
            "total",
            "level",
            "protocol",
            "corrected",
        }


def test_personal_file_values(records_app, read_models, centre):
    maria = centre.pupils["maria"]

    file = read_models().personal_file(maria)

    assert file["id"] == str(maria)
    assert (file["surname"], file["name"], file["patronymic"]) == PEOPLE["maria"][:3]
    assert file["birth_date"] == "2015-01-09"
    assert file["status"] == "enrolled"
    assert file["file_opened_on"] == "2024-08-26"
    assert file["file_closed_on"] is None
    assert file["version"] == records_app.pupil(maria).version


def test_personal_file_enrolments(read_models, centre):
    file = read_models().personal_file(centre.pupils["maria"])

    by_programme = {e["programme_id"]: e for e in file["enrolments"]}
    psy = by_programme[str(centre.programmes["psy"])]
    speech = by_programme[str(centre.programmes["speech"])]
    assert psy["status"] == "active"
    assert psy["effective_date"] == "2024-09-02"
    assert psy["order"] == {"number": "12-у", "date": "2024-09-02"}
    assert psy["expulsion"] is None
    assert speech["status"] == "expelled"
    assert speech["expulsion"]["effective_date"] == "2025-05-30"
    assert speech["expulsion"]["ground"] == "completed"
    assert speech["expulsion"]["order"] == {"number": "40-у", "date": "2025-05-30"}
    assert speech["expulsion"]["cancelled"] is False


def test_personal_file_corrected_attestation(read_models, centre):
    file = read_models().personal_file(centre.pupils["maria"])

    (attestation,) = file["attestations"]
    assert attestation["programme_id"] == str(centre.programmes["psy"])
    assert attestation["kind"] == "intermediate"
    assert attestation["date"] == "2024-12-20"
    assert attestation["scores"] == scores(7, 4, 2)
    assert attestation["total"] == 13
    assert attestation["level"] == "medium"
    assert attestation["protocol"] == {"number": "3-п", "date": "2024-12-20"}
    assert attestation["corrected"] is True


def test_personal_file_attendance_per_journal(read_models, centre):
    file = read_models().personal_file(centre.pupils["maria"])

    by_journal = {line["journal_id"]: line for line in file["attendance"]}
    assert set(by_journal) == {str(j) for j in centre.journals.values()}
    # psy: present once, excused once.
    assert by_journal[str(centre.journals["psy"])] == {
        "journal_id": str(centre.journals["psy"]),
        "programme_id": str(centre.programmes["psy"]),
        "sessions": 2,
        "present": 1,
        "absent": 1,
        "ill": 0,
        "excused": 1,
    }
    # speech: present once, ill once.
    assert by_journal[str(centre.journals["speech"])] == {
        "journal_id": str(centre.journals["speech"]),
        "programme_id": str(centre.programmes["speech"]),
        "sessions": 2,
        "present": 1,
        "absent": 1,
        "ill": 1,
        "excused": 0,
    }


def test_attendance_absent_counts_every_absence(records_app, read_models, centre):
    psy = centre.journals["psy"]
    vera = centre.pupils["vera"]

    (line,) = read_models().personal_file(vera)["attendance"]

    assert line["journal_id"] == str(psy)
    assert (line["sessions"], line["present"], line["ill"]) == (2, 1, 1)
    assert line["absent"] == 1


def test_left_pupil_file_closed(read_models, centre):
    file = read_models().personal_file(centre.pupils["vera"])

    (enrolment,) = file["enrolments"]
    assert file["status"] == "left"
    assert file["file_closed_on"] == "2025-03-31"
    assert enrolment["status"] == "expelled"
    assert enrolment["expulsion"]["ground"] == "other"
    assert enrolment["expulsion"]["cancelled"] is False


def test_transferred_enrolment_in_file(read_models, centre):
    file = read_models().personal_file(centre.pupils["gleb"])

    statuses = {e["programme_id"]: e["status"] for e in file["enrolments"]}
    assert statuses == {
        str(centre.programmes["psy"]): "transferred",
        str(centre.programmes["speech"]): "active",
    }
    assert file["status"] == "enrolled"
    assert file["file_closed_on"] is None


def test_cancelled_enrolment_restores_registered(read_models, centre):
    file = read_models().personal_file(centre.pupils["lev"])

    (enrolment,) = file["enrolments"]
    assert enrolment["status"] == "cancelled"
    assert file["status"] == "registered"
    assert file["attendance"] == []


def test_unknown_personal_file_is_none(read_models, centre):
    assert read_models().personal_file(centre.journals["psy"]) is None


def test_file_follows_later_commands(records_app, read_models):
    programme_id = create_programme(records_app)
    pupil_id = register_pupil(records_app)
    assert read_models().personal_file(pupil_id)["status"] == "registered"

    enrol(records_app, pupil_id, programme_id)
    records_app.expel(
        pupil_id,
        programme_id=programme_id,
        effective_date=date(2025, 12, 31),
        ground="completed",
        ground_detail=None,
        order=order("40-у", date(2026, 1, 12)),
    )

    file = read_models().personal_file(pupil_id)
    assert file["status"] == "left"
    assert file["file_closed_on"] == "2026-01-12"
    assert file["version"] == 3


# Lists


LIST_PEOPLE = [
    ("ёлкин", "Иван", None, date(2015, 1, 1)),
    ("Елисеев", "Анна", None, date(2015, 1, 2)),
    ("Жуков", "Олег", None, date(2015, 1, 7)),
    ("Абрамов", "Илья", None, date(2015, 1, 3)),
    ("Петров", "Пётр", None, date(2015, 1, 4)),
    ("ПЕТРОВ", "Петр", None, date(2016, 1, 4)),
    ("Петров", "Пётр", "Ильич", date(2015, 1, 5)),
    ("Яковлева", "Ника", None, date(2015, 1, 6)),
]


@pytest.fixture
def listed(records_app):
    """Register LIST_PEOPLE and return their ids in the expected list order."""
    keyed = []
    for surname, name, patronymic, born in LIST_PEOPLE:
        pupil_id = register_pupil(records_app, surname, name, patronymic, born)
        key = normalised_full_name(surname, name, patronymic)
        keyed.append((key, str(pupil_id)))
    return [pupil_id for _, pupil_id in sorted(keyed)]


def walk_pupils(read_models, limit, **filters):
    pages, cursor = [], None
    while True:
        items, cursor = read_models.pupils(limit, after=cursor, **filters)
        pages.append(items)
        if cursor is None:
            return pages


def test_longest_names_listed_though_folding_lengthens_them(records_app, read_models):
    # Each name is at the 200-character limit, and case folding makes every
    # ß two letters: the full sort key is longer than its column.
    longest = "ß" * 200
    pupil_id = register_pupil(records_app, longest, longest, longest, date(2015, 1, 1))

    items, _ = read_models().pupils(10)

    assert [item["id"] for item in items] == [str(pupil_id)]
    assert read_models().personal_file(pupil_id)["surname"] == longest


def test_pupils_ordered_by_normalised_name_then_id(read_models, listed):
    items, cursor = read_models().pupils(100)

    assert [item["id"] for item in items] == listed
    assert cursor is None


def test_yo_sorted_as_ye(read_models, listed):
    items, _ = read_models().pupils(100)

    # In code point order Ё and ё would sort before А and after Я.
    surnames = [item["surname"] for item in items]
    assert surnames[:4] == ["Абрамов", "Елисеев", "ёлкин", "Жуков"]


@pytest.mark.parametrize("limit", [1, 3, 8, 9])
def test_pupil_pages_cover_list_once(read_models, listed, limit):
    pages = walk_pupils(read_models(), limit)

    assert [item["id"] for page in pages for item in page] == listed
    assert all(len(page) == limit for page in pages[:-1])
    assert 0 < len(pages[-1]) <= limit


def test_pupil_summary_fields(read_models, listed):
    items, _ = read_models().pupils(1)

    assert set(items[0]) >= {"id", "surname", "name", "patronymic", "birth_date"}
    assert items[0]["status"] == "registered"
    assert "enrolments" not in items[0]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("enrolled", ["maria", "gleb"]),
        ("left", ["vera"]),
        ("registered", ["lev"]),
    ],
)
def test_pupils_filtered_by_status(read_models, centre, status, expected):
    items, _ = read_models().pupils(100, status=status)

    assert [item["id"] for item in items] == [str(centre.pupils[k]) for k in expected]


@pytest.mark.parametrize(
    ("programme", "expected"),
    [("psy", ["maria", "gleb", "vera"]), ("speech", ["maria", "gleb"])],
)
def test_pupils_filtered_by_programme(read_models, centre, programme, expected):
    programme_id = str(centre.programmes[programme])

    pages = walk_pupils(read_models(), 1, programme_id=programme_id)

    ids = [item["id"] for page in pages for item in page]
    assert ids == [str(centre.pupils[k]) for k in expected]


# History


def test_history_lists_pupil_events_oldest_first(records_app, read_models, centre):
    vera = centre.pupils["vera"]

    items, cursor = read_models().history(vera, 100)

    assert [item["type"] for item in items] == [
        "pupil.registered",
        "pupil.enrolled",
        "attendance.began",
        "pupil.expelled",
        "pupil.expulsion_cancelled",
        "pupil.expelled",
    ]
    positions = [item["position"] for item in items]
    assert positions == sorted(positions)
    assert positions[-1] <= records_app.head_position()
    assert cursor is None


def test_history_records_reason(read_models, centre):
    items, _ = read_models().history(centre.pupils["vera"], 100)

    reasons = {item["type"]: item["reason"] for item in items}
    assert reasons["pupil.expulsion_cancelled"] == "приказ отменён"
    assert reasons["pupil.registered"] is None
    assert reasons["pupil.enrolled"] is None


def test_history_records_actor_of_each_event(records_app, read_models):
    programme_id = create_programme(records_app)
    pupil_id = register_pupil(records_app)
    enrol(records_app, pupil_id, programme_id)
    with acting_as(METHODIST):
        attestation = records_app.record_attestation(
            pupil_id,
            programme_id=programme_id,
            kind="final",
            on=date(2025, 5, 20),
            scores=scores(),
            protocol=order("7-п", date(2025, 5, 20)),
        )
        records_app.correct_attestation(
            pupil_id, attestation.resource["id"], scores=scores(1), reason="описка"
        )

    items, _ = read_models().history(pupil_id, 100)

    actors = [(item["type"], item["actor"], item["reason"]) for item in items]
    registrar = {"name": "Орлова Анна", "role": "registrar"}
    methodist = {"name": "Козлова Вера", "role": "methodist"}
    assert actors == [
        ("pupil.registered", registrar, None),
        ("pupil.enrolled", registrar, None),
        ("attestation.recorded", methodist, None),
        ("attestation.corrected", methodist, "описка"),
    ]
    assert items[3]["data"]["scores"] == scores(1)
    assert items[0]["recorded_at"].endswith("Z")


def test_history_pages_by_position(read_models, centre):
    read = read_models()
    everything, _ = read.history(centre.pupils["vera"], 100)

    first, cursor = read.history(centre.pupils["vera"], 4)
    rest, last_cursor = read.history(centre.pupils["vera"], 4, after_position=cursor)

    assert first + rest == everything
    assert cursor == first[-1]["position"]
    assert last_cursor is None


def test_history_holds_only_own_events(read_models, centre):
    items, _ = read_models().history(centre.pupils["lev"], 100)

    assert [item["type"] for item in items] == [
        "pupil.registered",
        "pupil.enrolled",
        "pupil.enrolment_cancelled",
    ]


# Journals


def test_journal_document_with_sessions(read_models, centre):
    journal = read_models().journal(centre.journals["speech"])

    assert journal["id"] == str(centre.journals["speech"])
    assert journal["closed_on"] is None
    assert [s["date"] for s in journal["sessions"]] == ["2024-09-10", "2025-01-14"]
    assert journal["sessions"][1]["attendance"] == [
        {"pupil_id": str(centre.pupils["maria"]), "status": "ill"},
        {"pupil_id": str(centre.pupils["gleb"]), "status": "present"},
    ]


def test_closed_journal_document(read_models, centre):
    journal = read_models().journal(centre.journals["psy"])

    assert journal["closed_on"] == "2025-05-30"
    assert len(journal["sessions"]) == 2
