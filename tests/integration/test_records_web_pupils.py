"""Pupils over HTTP: registration, orders, attestations, files, lists, history."""

from __future__ import annotations

import base64
import unicodedata
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.records.web.testing import (
    YEAR_START,
    RecordsWebClient,
    expect,
    expect_problem,
    make_client,
    order,
    programme_body,
    pupil_body,
    scores,
)

PUPILS = "/api/v1/pupils"
UNKNOWN_ID = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
PURPOSE = {"X-Purpose": "%D0%BF%D1%80%D0%BE%D0%B2%D0%B5%D1%80%D0%BA%D0%B0"}


@pytest.fixture
def web(tmp_path: Path) -> Iterator[RecordsWebClient]:
    """A records app on the in-memory store."""
    client = make_client(tmp_path, "memory://")
    yield client
    client.close()


@pytest.fixture
def backend_web(tmp_path: Path, database_url: str) -> Iterator[RecordsWebClient]:
    """A records app on each database backend, read through the projector."""
    client = make_client(tmp_path, database_url)
    yield client
    client.close()


def enrol_new_pupil(web: RecordsWebClient) -> dict[str, Any]:
    """Register a pupil and enrol them in programme КРЗ-1 from 2 September 2024."""
    programme = web.create_programme()
    pupil = web.register_pupil()
    enrolment = web.enrol(pupil["id"], programme["id"])
    return {"pupil": pupil, "programme": programme, "enrolment": enrolment}


@pytest.fixture
def enrolled(web: RecordsWebClient) -> dict[str, Any]:
    """A pupil enrolled in programme КРЗ-1 from 2 September 2024."""
    return enrol_new_pupil(web)


def expulsion_body(programme_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "programme_id": programme_id,
        "effective_date": "2025-05-31",
        "ground": "completed",
        "order": order("30-о", date(2025, 5, 30)),
    }
    body.update(changes)
    return body


def attestation_body(programme_id: str, **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "programme_id": programme_id,
        "kind": "intermediate",
        "date": "2024-12-20",
        "scores": scores(),
        "protocol": order("3", date(2024, 12, 20)),
    }
    body.update(changes)
    return body


# Registration


def test_register_opens_personal_file(backend_web):
    response = backend_web.post(PUPILS, pupil_body(), "registrar")

    body = expect(response, 201)
    assert response.headers["Location"] == f"{PUPILS}/{body['id']}"
    assert body["surname"] == "Иванов"
    assert body["birth_date"] == "2015-04-03"
    assert body["status"] == "registered"
    assert body["file_opened_on"] == "2024-08-26"
    assert body["file_closed_on"] is None
    assert body["enrolments"] == []
    assert body["version"] == 1
    assert body["position"] == backend_web.head()


def test_register_stores_names_trimmed_in_nfc(web):
    decomposed = unicodedata.normalize("NFD", "Пётр")

    body = web.register_pupil(
        surname="\u200b Иванов  ", name=decomposed, patronymic="\tСергеевич"
    )

    assert body["surname"] == "Иванов"
    assert body["name"] == "Пётр"
    assert body["patronymic"] == "Сергеевич"


def test_register_without_patronymic(web):
    body = web.register_pupil(patronymic=None)

    assert body["patronymic"] is None


def test_register_opens_file_today_by_default(web):
    registration = pupil_body()
    del registration["opened_on"]

    body = expect(web.post(PUPILS, registration, "registrar"), 201)

    assert body["file_opened_on"] == web.today().isoformat()


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"surname": "  \u200b "}, "surname"),
        ({"name": ""}, "name"),
        ({"name": "Пё\ud800тр"}, "name"),
        ({"patronymic": " "}, "patronymic"),
        ({"surname": "Иванов\nПетров"}, "surname"),
        ({"surname": 5}, "surname"),
        ({"birth_date": "2015-02-29"}, "birth_date"),
        ({"birth_date": "03.04.2015"}, "birth_date"),
        ({"birth_date": "2015-4-3"}, "birth_date"),
        ({"opened_on": "2014-01-01"}, "opened_on"),
        ({"nickname": "Петя"}, "nickname"),
    ],
)
def test_register_rejects_invalid_fields(web, changes, path):
    response = web.post(PUPILS, pupil_body(**changes), "registrar")

    body = expect_problem(response, 422)
    assert path in body["errors"]
    assert web.head() == 0


@pytest.mark.parametrize("field", ["birth_date", "opened_on"])
def test_register_rejects_future_dates(web, field):
    changes = {field: web.tomorrow().isoformat()}

    response = web.post(PUPILS, pupil_body(**changes), "registrar")

    body = expect_problem(response, 422)
    assert field in body["errors"]


def test_register_duplicate_is_409_with_existing_id(backend_web):
    first = backend_web.register_pupil()
    head = backend_web.head()
    same = pupil_body(surname=" ИВАНОВ ", name="петр", patronymic="сергеевич")

    response = backend_web.post(PUPILS, same, "registrar")

    body = expect_problem(response, 409)
    assert body["existing_id"] == first["id"]
    assert backend_web.head() == head


LOOK_ALIKE_SURNAMES = [
    ("Ёлки\u200bна", "U+200B"),
    ("Ёлкин\u202eа", "U+202E"),
    ("Ёл\u00adкина", "U+00AD"),
    ("Ёлкинa", "Cyrillic and Latin"),
]


@pytest.mark.parametrize(("surname", "words"), LOOK_ALIKE_SURNAMES)
def test_register_look_alike_surname_is_422(backend_web, surname, words):
    backend_web.register_pupil(surname="Ёлкина")
    head = backend_web.head()

    response = backend_web.post(PUPILS, pupil_body(surname=surname), "registrar")

    body = expect_problem(response, 422)
    assert list(body["errors"]) == ["surname"]
    assert words in body["errors"]["surname"][0]
    assert backend_web.head() == head


@pytest.mark.parametrize(
    "surname",
    ["Елкина", unicodedata.normalize("NFD", "Ёлкина"), "\u202eЁлкина", "Ёлкина\u200b"],
)
def test_register_respelled_surname_is_duplicate(backend_web, surname):
    first = backend_web.register_pupil(surname="Ёлкина")

    response = backend_web.post(PUPILS, pupil_body(surname=surname), "registrar")

    assert expect_problem(response, 409)["existing_id"] == first["id"]


@pytest.mark.parametrize(
    ("stored", "surname", "name"),
    [
        ("Петрова-Водкина", "Петрова\u2010Водкина", "Анна"),
        ("Петрова-Водкина", "Петрова\u2013Водкина", "Анна"),
        ("Петрова-Водкина", "Петрова - Водкина", "Анна"),
        ("Петрова\u2014Водкина", "Петрова-Водкина", "Анна"),
        ("Петрова-Водкина", "Петрова-Водкина", "А\u0301нна"),
        ("Ива\u0301нов", "Иванов", "Анна"),
        ("Иванов", "Ива\u0301нов", "Анна"),
    ],
)
def test_register_dash_or_stress_variant_is_duplicate(
    backend_web, stored, surname, name
):
    first = backend_web.register_pupil(
        surname=stored, name="Анна", birth_date="2014-07-07"
    )
    head = backend_web.head()
    body = pupil_body(surname=surname, name=name, birth_date="2014-07-07")

    response = backend_web.post(PUPILS, body, "registrar")

    assert expect_problem(response, 409)["existing_id"] == first["id"]
    assert backend_web.head() == head


def test_register_keeps_stress_mark_and_dash_as_given(web):
    body = pupil_body(surname="Петрова \u2013 Водкина", name="А\u0301нна")

    answer = expect(web.post(PUPILS, body, "registrar"), 201)

    assert answer["surname"] == "Петрова \u2013 Водкина"
    assert answer["name"] == "А\u0301нна"
    stored = web.personal_file(answer["id"])
    assert stored["surname"] == "Петрова \u2013 Водкина"
    assert stored["name"] == "А\u0301нна"


@pytest.mark.parametrize("surname", ["Йванов", "Иванова", "Петрова Водкина"])
def test_register_other_letters_are_not_duplicates(web, surname):
    web.register_pupil(surname="Иванов")

    expect(web.post(PUPILS, pupil_body(surname=surname), "registrar"), 201)


def test_register_mixed_script_patronymic_is_422(web):
    response = web.post(PUPILS, pupil_body(patronymic="Сергeевич"), "registrar")

    assert list(expect_problem(response, 422)["errors"]) == ["patronymic"]


def test_register_is_registrar_only(web):
    for role in ("methodist", "specialist", "admin", "inspector", "subscriber"):
        expect_problem(web.post(PUPILS, pupil_body(), role), 403)


# Enrolment


def test_enrol_returns_enrolment(backend_web):
    programme = backend_web.create_programme()
    pupil = backend_web.register_pupil()
    body = {
        "programme_id": programme["id"],
        "effective_date": "2024-09-02",
        "order": order("12-у", date(2024, 8, 30)),
    }

    response = backend_web.post(f"{PUPILS}/{pupil['id']}/enrolments", body, "registrar")

    answer = expect(response, 201)
    assert response.headers["Location"] == f"{PUPILS}/{pupil['id']}"
    assert answer["pupil_id"] == pupil["id"]
    assert answer["programme_id"] == programme["id"]
    assert answer["effective_date"] == "2024-09-02"
    assert answer["order"] == {"number": "12-у", "date": "2024-08-30"}
    assert answer["status"] == "active"
    assert answer["expulsion"] is None
    assert answer["position"] == backend_web.head()
    assert backend_web.personal_file(pupil["id"])["status"] == "enrolled"


def test_enrol_with_future_effective_date(web):
    programme = web.create_programme()
    pupil = web.register_pupil()

    answer = web.enrol(pupil["id"], programme["id"], web.tomorrow(), web.today())

    assert answer["effective_date"] == web.tomorrow().isoformat()


def test_enrol_twice_is_409(web, enrolled):
    head = web.head()
    body = {
        "programme_id": enrolled["programme"]["id"],
        "effective_date": "2024-10-01",
        "order": order("13-у", date(2024, 10, 1)),
    }

    response = web.post(
        f"{PUPILS}/{enrolled['pupil']['id']}/enrolments", body, "registrar"
    )

    expect_problem(response, 409)
    assert web.head() == head


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"programme_id": UNKNOWN_ID}, "programme_id"),
        ({"programme_id": "КРЗ-1"}, "programme_id"),
        ({"order": {"number": "1", "date": "2999-01-01"}}, "order.date"),
        ({"order": {"number": "1"}}, "order.date"),
        ({"effective_date": None}, "effective_date"),
        ({"effective_date": "0001-01-01"}, "effective_date"),
        ({"effective_date": "9999-12-31"}, "effective_date"),
    ],
)
def test_enrol_rejects_invalid_body(web, changes, path):
    programme = web.create_programme()
    pupil = web.register_pupil()
    body = {
        "programme_id": programme["id"],
        "effective_date": "2024-09-02",
        "order": order(),
    }
    body.update(changes)
    head = web.head()

    response = web.post(f"{PUPILS}/{pupil['id']}/enrolments", body, "registrar")

    assert path in expect_problem(response, 422)["errors"]
    assert web.head() == head


def test_enrol_unknown_pupil_is_404(web):
    programme = web.create_programme()
    body = {
        "programme_id": programme["id"],
        "effective_date": "2024-09-02",
        "order": order(),
    }

    for pupil_id in (UNKNOWN_ID, "12345"):
        response = web.post(f"{PUPILS}/{pupil_id}/enrolments", body, "registrar")
        expect_problem(response, 404)


def test_cancel_enrolment_returns_file_to_registered(web, enrolled):
    pupil_id = enrolled["pupil"]["id"]
    path = f"{PUPILS}/{pupil_id}/enrolments/{enrolled['enrolment']['id']}/cancellation"
    body = {"reason": "Приказ издан ошибочно", "order": order("14-у", date(2024, 9, 3))}

    response = web.post(path, body, "registrar")

    answer = expect(response, 200)
    assert answer["status"] == "cancelled"
    assert answer["id"] == enrolled["enrolment"]["id"]
    assert answer["position"] == web.head()
    assert web.personal_file(pupil_id)["status"] == "registered"


def test_cancel_enrolment_with_attestation_is_409(web, enrolled):
    pupil_id = enrolled["pupil"]["id"]
    web.attest(pupil_id, enrolled["programme"]["id"])
    head = web.head()
    path = f"{PUPILS}/{pupil_id}/enrolments/{enrolled['enrolment']['id']}/cancellation"
    body = {"reason": "Ошибка", "order": order("14-у", date(2024, 12, 21))}

    expect_problem(web.post(path, body, "registrar"), 409)
    assert web.head() == head


def test_cancel_unknown_enrolment_is_404(web):
    pupil = web.register_pupil()
    body = {"reason": "Ошибка", "order": order()}

    response = web.post(
        f"{PUPILS}/{pupil['id']}/enrolments/{UNKNOWN_ID}/cancellation",
        body,
        "registrar",
    )

    assert "enrolment" in expect_problem(response, 404)["detail"]


# Transfers


def test_transfer_starts_new_enrolment(web, enrolled):
    pupil_id = enrolled["pupil"]["id"]
    target = web.create_programme("КРЗ-2")
    body = {
        "from_programme_id": enrolled["programme"]["id"],
        "to_programme_id": target["id"],
        "effective_date": "2025-01-13",
        "order": order("20-п", date(2025, 1, 10)),
    }

    response = web.post(f"{PUPILS}/{pupil_id}/transfers", body, "registrar")

    answer = expect(response, 201)
    assert response.headers["Location"] == f"{PUPILS}/{pupil_id}"
    assert answer["programme_id"] == target["id"]
    assert answer["effective_date"] == "2025-01-13"
    assert answer["status"] == "active"
    file = web.personal_file(pupil_id)
    assert file["status"] == "enrolled"
    assert [e["status"] for e in file["enrolments"]] == ["transferred", "active"]


def test_transfer_into_same_programme_is_422(web):
    programme = web.create_programme()
    pupil = web.register_pupil()
    body = {
        "from_programme_id": programme["id"],
        "to_programme_id": programme["id"],
        "effective_date": "2025-01-13",
        "order": order(),
    }

    response = web.post(f"{PUPILS}/{pupil['id']}/transfers", body, "registrar")

    assert "to_programme_id" in expect_problem(response, 422)["errors"]


def test_transfer_when_not_enrolled_is_409(web):
    first = web.create_programme("КРЗ-1")
    second = web.create_programme("КРЗ-2")
    pupil = web.register_pupil()
    head = web.head()
    body = {
        "from_programme_id": first["id"],
        "to_programme_id": second["id"],
        "effective_date": "2025-01-13",
        "order": order(),
    }

    expect_problem(
        web.post(f"{PUPILS}/{pupil['id']}/transfers", body, "registrar"), 409
    )
    assert web.head() == head


# Expulsions


@pytest.mark.parametrize(
    ("effective", "signed", "closed"),
    [
        (date(2025, 5, 31), date(2025, 5, 31), "2025-05-31"),
        (date(2025, 12, 31), date(2026, 1, 12), "2026-01-12"),
        (date(2025, 6, 30), date(2025, 6, 2), "2025-06-30"),
    ],
)
def test_expel_last_programme_closes_file(web, enrolled, effective, signed, closed):
    pupil_id = enrolled["pupil"]["id"]
    body = expulsion_body(
        enrolled["programme"]["id"],
        effective_date=effective.isoformat(),
        order=order("30-о", signed),
    )

    response = web.post(f"{PUPILS}/{pupil_id}/expulsions", body, "registrar")

    answer = expect(response, 201)
    assert response.headers["Location"] == f"{PUPILS}/{pupil_id}"
    assert answer["left_centre"] is True
    assert answer["file_closed_on"] == closed
    assert answer["cancelled"] is False
    assert answer["ground"] == "completed"
    assert answer["enrolment_id"] == enrolled["enrolment"]["id"]
    file = web.personal_file(pupil_id)
    assert file["status"] == "left"
    assert file["file_closed_on"] == closed
    assert file["enrolments"][0]["expulsion"]["id"] == answer["id"]


def test_expel_from_one_of_two_keeps_file_open(web, enrolled):
    pupil_id = enrolled["pupil"]["id"]
    other = web.create_programme("КРЗ-2")
    web.enrol(pupil_id, other["id"])

    answer = web.expel(pupil_id, enrolled["programme"]["id"], date(2025, 3, 1))

    assert answer["left_centre"] is False
    file = web.personal_file(pupil_id)
    assert file["status"] == "enrolled"
    assert file["file_closed_on"] is None


def test_expel_when_not_enrolled_is_409(web):
    programme = web.create_programme()
    pupil = web.register_pupil()
    head = web.head()

    response = web.post(
        f"{PUPILS}/{pupil['id']}/expulsions",
        expulsion_body(programme["id"]),
        "registrar",
    )

    expect_problem(response, 409)
    assert web.head() == head


def test_expel_before_enrolment_date_is_409(web, enrolled):
    body = expulsion_body(
        enrolled["programme"]["id"],
        effective_date="2024-09-01",
        order=order("30-о", date(2024, 9, 1)),
    )

    response = web.post(
        f"{PUPILS}/{enrolled['pupil']['id']}/expulsions", body, "registrar"
    )

    expect_problem(response, 409)


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"ground": "other"}, "ground_detail"),
        ({"ground": "other", "ground_detail": "  "}, "ground_detail"),
        ({"ground": "absence"}, "ground"),
        ({"order": {"number": "1", "date": "2999-12-31"}}, "order.date"),
        ({"effective_date": "9999-12-31"}, "effective_date"),
        ({"effective_date": "3000-01-01"}, "effective_date"),
    ],
)
def test_expel_rejects_invalid_body(web, changes, path):
    programme = web.create_programme()
    pupil = web.register_pupil()
    web.enrol(pupil["id"], programme["id"])
    body = expulsion_body(programme["id"], **changes)

    response = web.post(f"{PUPILS}/{pupil['id']}/expulsions", body, "registrar")

    assert path in expect_problem(response, 422)["errors"]


def test_expel_with_other_ground_and_detail(web):
    programme = web.create_programme()
    pupil = web.register_pupil()
    web.enrol(pupil["id"], programme["id"])
    body = expulsion_body(
        programme["id"], ground="other", ground_detail="Переезд семьи в другой город"
    )

    answer = expect(
        web.post(f"{PUPILS}/{pupil['id']}/expulsions", body, "registrar"), 201
    )

    assert answer["ground_detail"] == "Переезд семьи в другой город"


def test_cancel_expulsion_reactivates_enrolment(backend_web):
    enrolled = enrol_new_pupil(backend_web)
    pupil_id = enrolled["pupil"]["id"]
    expulsion = backend_web.expel(
        pupil_id, enrolled["programme"]["id"], date(2025, 5, 31)
    )
    path = f"{PUPILS}/{pupil_id}/expulsions/{expulsion['id']}/cancellation"
    body = {"reason": "Отчислен по ошибке", "order": order("31-о", date(2025, 6, 2))}

    response = backend_web.post(path, body, "registrar")

    answer = expect(response, 200)
    assert answer["cancelled"] is True
    assert answer["position"] == backend_web.head()
    file = backend_web.personal_file(pupil_id)
    assert file["status"] == "enrolled"
    assert file["file_closed_on"] is None
    assert file["enrolments"][0]["status"] == "active"
    assert file["enrolments"][0]["expulsion"]["cancelled"] is True

    expect_problem(backend_web.post(path, body, "registrar"), 409)


def test_readmission_reopens_closed_file(web, enrolled):
    pupil_id = enrolled["pupil"]["id"]
    programme_id = enrolled["programme"]["id"]
    web.expel(pupil_id, programme_id, date(2025, 5, 31))
    early = {
        "programme_id": programme_id,
        "effective_date": "2025-05-31",
        "order": order("40-у", date(2025, 6, 1)),
    }
    expect_problem(web.post(f"{PUPILS}/{pupil_id}/enrolments", early, "registrar"), 409)

    web.enrol(pupil_id, programme_id, date(2025, 9, 1))

    file = web.personal_file(pupil_id)
    assert file["status"] == "enrolled"
    assert file["file_closed_on"] is None
    assert len(file["enrolments"]) == 2


# Attestations


@pytest.mark.parametrize(
    ("points", "total", "level"),
    [
        (scores(7, 5, 2), 14, "high"),
        (scores(7, 5, 1), 13, "medium"),
        (scores(4, 3, 1), 8, "medium"),
        (scores(4, 3, 0), 7, "low"),
    ],
)
def test_attestation_level_is_exact(web, enrolled, points, total, level):
    pupil_id = enrolled["pupil"]["id"]

    response = web.post(
        f"{PUPILS}/{pupil_id}/attestations",
        attestation_body(enrolled["programme"]["id"], scores=points),
        "methodist",
    )

    answer = expect(response, 201)
    assert response.headers["Location"] == f"{PUPILS}/{pupil_id}"
    assert answer["total"] == total
    assert answer["level"] == level
    assert answer["max_total"] == 25
    assert answer["scores"] == points
    assert answer["corrected"] is False
    assert answer["position"] == web.head()
    assert web.personal_file(pupil_id)["attestations"][0]["level"] == level


@pytest.mark.parametrize(
    ("points", "paths"),
    [
        ({"attention": 5, "memory": 5}, {"scores.speech"}),
        ({**scores(), "logic": 1}, {"scores.logic"}),
        (scores(attention=11), {"scores.attention"}),
        (scores(memory=-1), {"scores.memory"}),
        ({**scores(), "speech": 2.0}, {"scores.speech"}),
        ({**scores(), "speech": "2"}, {"scores.speech"}),
        ({**scores(), "speech": None}, {"scores.speech"}),
        ({}, {"scores.attention", "scores.memory", "scores.speech"}),
    ],
)
def test_attestation_scores_follow_criteria(web, enrolled, points, paths):
    head = web.head()

    response = web.post(
        f"{PUPILS}/{enrolled['pupil']['id']}/attestations",
        attestation_body(enrolled["programme"]["id"], scores=points),
        "methodist",
    )

    assert set(expect_problem(response, 422)["errors"]) == paths
    assert web.head() == head


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"kind": "annual"}, "kind"),
        ({"protocol": {"number": "3", "date": "2999-01-01"}}, "protocol.date"),
        ({"programme_id": UNKNOWN_ID}, "programme_id"),
        ({"scores": [1, 2, 3]}, "scores"),
    ],
)
def test_attestation_rejects_invalid_body(web, changes, path):
    programme = web.create_programme()
    pupil = web.register_pupil()
    web.enrol(pupil["id"], programme["id"])

    body = attestation_body(programme["id"])
    body.update(changes)

    response = web.post(f"{PUPILS}/{pupil['id']}/attestations", body, "methodist")

    assert path in expect_problem(response, 422)["errors"]


def test_attestation_in_the_future_is_422(web):
    programme = web.create_programme()
    pupil = web.register_pupil()
    web.enrol(pupil["id"], programme["id"])
    body = attestation_body(programme["id"], date=web.tomorrow().isoformat())

    response = web.post(f"{PUPILS}/{pupil['id']}/attestations", body, "methodist")

    assert "date" in expect_problem(response, 422)["errors"]


@pytest.mark.parametrize("on", ["2024-09-01", "2025-06-01"])
def test_attestation_outside_enrolment_is_409(web, enrolled, on):
    pupil_id = enrolled["pupil"]["id"]
    programme_id = enrolled["programme"]["id"]
    web.expel(pupil_id, programme_id, date(2025, 5, 31))
    head = web.head()
    body = attestation_body(
        programme_id, date=on, protocol=order("3", date(2025, 6, 1))
    )

    expect_problem(
        web.post(f"{PUPILS}/{pupil_id}/attestations", body, "methodist"), 409
    )
    assert web.head() == head


def test_attestation_on_last_day_of_enrolment(web, enrolled):
    pupil_id = enrolled["pupil"]["id"]
    programme_id = enrolled["programme"]["id"]
    web.expel(pupil_id, programme_id, date(2025, 5, 31))

    answer = web.attest(pupil_id, programme_id, on=date(2025, 5, 31), kind="final")

    assert answer["kind"] == "final"


def test_attestation_is_methodist_only(web):
    programme = web.create_programme()
    pupil = web.register_pupil()
    web.enrol(pupil["id"], programme["id"])

    response = web.post(
        f"{PUPILS}/{pupil['id']}/attestations",
        attestation_body(programme["id"]),
        "registrar",
    )

    expect_problem(response, 403)


def test_correction_recomputes_and_keeps_original(backend_web):
    enrolled = enrol_new_pupil(backend_web)
    pupil_id = enrolled["pupil"]["id"]
    attestation = backend_web.attest(
        pupil_id, enrolled["programme"]["id"], scores(4, 3, 0)
    )
    path = f"{PUPILS}/{pupil_id}/attestations/{attestation['id']}/corrections"
    body = {"scores": scores(7, 5, 2), "reason": "Ошибка при подсчёте баллов"}

    response = backend_web.post(path, body, "methodist")

    answer = expect(response, 200)
    assert answer["id"] == attestation["id"]
    assert answer["total"] == 14
    assert answer["level"] == "high"
    assert answer["corrected"] is True
    history = expect(backend_web.get(f"{PUPILS}/{pupil_id}/history", "methodist"), 200)
    entries = {item["type"]: item for item in history["items"]}
    assert entries["attestation.recorded"]["data"]["total"] == 7
    assert entries["attestation.corrected"]["data"]["total"] == 14
    assert entries["attestation.corrected"]["reason"] == "Ошибка при подсчёте баллов"


def test_correction_rejects_invalid_scores(web, enrolled):
    pupil_id = enrolled["pupil"]["id"]
    attestation = web.attest(pupil_id, enrolled["programme"]["id"])
    path = f"{PUPILS}/{pupil_id}/attestations/{attestation['id']}/corrections"

    response = web.post(
        path, {"scores": scores(speech=6), "reason": "Ошибка"}, "methodist"
    )

    assert "scores.speech" in expect_problem(response, 422)["errors"]


def test_correction_of_unknown_attestation_is_404(web):
    pupil = web.register_pupil()
    path = f"{PUPILS}/{pupil['id']}/attestations/{UNKNOWN_ID}/corrections"

    response = web.post(path, {"scores": scores(), "reason": "Ошибка"}, "methodist")

    expect_problem(response, 404)


# Reads


def test_personal_file_has_every_part(backend_web):
    enrolled = enrol_new_pupil(backend_web)
    pupil_id = enrolled["pupil"]["id"]
    backend_web.attest(pupil_id, enrolled["programme"]["id"])

    file = backend_web.personal_file(pupil_id)

    assert file["id"] == pupil_id
    assert file["patronymic"] == "Сергеевич"
    assert file["file_opened_on"] == "2024-08-26"
    enrolment = file["enrolments"][0]
    assert enrolment["id"] == enrolled["enrolment"]["id"]
    assert enrolment["order"] == {"number": "12-у", "date": "2024-09-02"}
    assert enrolment["status"] == "active"
    attestation = file["attestations"][0]
    assert attestation["protocol"] == {"number": "3", "date": "2024-12-20"}
    assert attestation["total"] == 12
    assert file["attendance"] == []
    assert file["version"] == 3


@pytest.mark.parametrize(
    "pupil_id", [UNKNOWN_ID, "nobody", UNKNOWN_ID.replace("-", "")]
)
def test_personal_file_of_unknown_pupil_is_404(web, pupil_id):
    expect_problem(web.get(f"{PUPILS}/{pupil_id}", "methodist"), 404)


@pytest.mark.parametrize(
    ("role", "headers", "status"),
    [
        ("methodist", {}, 200),
        ("registrar", {}, 200),
        ("inspector", PURPOSE, 200),
        ("inspector", {}, 403),
        ("inspector", {"X-Purpose": "%20"}, 403),
        ("specialist", {}, 403),
        ("admin", {}, 403),
        ("archivist", {}, 403),
        ("subscriber", {}, 403),
        (None, {}, 401),
    ],
)
def test_personal_file_roles(web, role, headers, status):
    pupil = web.register_pupil()

    response = web.get(f"{PUPILS}/{pupil['id']}", role, **headers)

    assert response.status_code == status


def test_list_filters_by_status_and_programme(backend_web):
    first = backend_web.create_programme("КРЗ-1")
    second = backend_web.create_programme("КРЗ-2")
    anna = backend_web.register_pupil(surname="Акимова", name="Анна", patronymic=None)
    boris = backend_web.register_pupil(surname="Борисов", name="Борис", patronymic=None)
    backend_web.register_pupil(surname="Власов", name="Виктор", patronymic=None)
    backend_web.enrol(anna["id"], first["id"])
    backend_web.enrol(boris["id"], second["id"])

    def names(query: dict[str, Any]) -> list[str]:
        body = expect(backend_web.get(PUPILS, "registrar", query), 200)
        return [item["surname"] for item in body["items"]]

    assert names({}) == ["Акимова", "Борисов", "Власов"]
    assert names({"status": "enrolled"}) == ["Акимова", "Борисов"]
    assert names({"status": "registered"}) == ["Власов"]
    assert names({"programme_id": second["id"]}) == ["Борисов"]
    assert names({"status": "left"}) == []


def test_list_items_are_summaries(web):
    pupil = web.register_pupil()

    body = expect(web.get(PUPILS, "methodist"), 200)

    item = body["items"][0]
    assert item["id"] == pupil["id"]
    assert item["birth_date"] == "2015-04-03"
    assert item["status"] == "registered"
    assert "enrolments" not in item
    assert body["next_cursor"] is None


def test_list_pages_by_normalised_name(backend_web):
    for surname in ("Ёлкина", "Абрамов", "елкин", "Борисова", "Жуков"):
        backend_web.register_pupil(surname=surname, name="Саша", patronymic=None)

    seen: list[str] = []
    cursor = None
    for _ in range(5):
        query: dict[str, Any] = {"limit": 2}
        if cursor:
            query["cursor"] = cursor
        body = expect(backend_web.get(PUPILS, "registrar", query), 200)
        seen += [item["surname"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert seen == ["Абрамов", "Борисова", "елкин", "Ёлкина", "Жуков"]
    assert cursor is None


def test_list_cursor_hides_names(web):
    for surname in ("Абрамов", "Борисова", "Волков"):
        web.register_pupil(surname=surname)

    cursor = expect(web.get(PUPILS, "registrar", {"limit": 2}), 200)["next_cursor"]

    padded = cursor + "=" * (-len(cursor) % 4)
    raw = base64.urlsafe_b64decode(padded)
    assert "борисова".encode() not in raw
    assert "Борисова".encode() not in raw


def test_list_rejects_changed_or_foreign_cursor(web):
    for surname in ("Абрамов", "Борисова", "Волков"):
        web.register_pupil(surname=surname)
    web.create_programme(code="А-1")
    web.create_programme(code="Б-2")
    pupils_cursor = web.get(PUPILS, "registrar", {"limit": 1}).get_json()["next_cursor"]
    programmes_cursor = web.get(
        "/api/v1/programmes", "registrar", {"limit": 1}
    ).get_json()["next_cursor"]
    changed = pupils_cursor[:-2] + ("AA" if pupils_cursor[-2:] != "AA" else "BB")

    for cursor in (changed, programmes_cursor, pupils_cursor[:20]):
        response = web.get(PUPILS, "registrar", {"limit": 1, "cursor": cursor})
        assert "query.cursor" in expect_problem(response, 422)["errors"], cursor


@pytest.mark.parametrize(
    "query",
    [
        {"status": "expelled"},
        {"programme_id": "КРЗ-1"},
        {"limit": "1.5"},
        {"cursor": "eyJhZnRlciI6Nn0"},
        {"surname": "Иванов"},
    ],
)
def test_list_rejects_invalid_query(web, query):
    response = web.get(PUPILS, "registrar", query)

    errors = expect_problem(response, 422)["errors"]
    assert all(path.startswith("query.") for path in errors)


def test_list_needs_purpose_from_inspector(web):
    expect_problem(web.get(PUPILS, "inspector"), 403)
    expect(web.get(PUPILS, "inspector", **PURPOSE), 200)


def test_history_lists_events_with_actor_and_reason(backend_web):
    enrolled = enrol_new_pupil(backend_web)
    pupil_id = enrolled["pupil"]["id"]
    expulsion = backend_web.expel(
        pupil_id, enrolled["programme"]["id"], date(2025, 5, 31)
    )
    backend_web.post(
        f"{PUPILS}/{pupil_id}/expulsions/{expulsion['id']}/cancellation",
        {"reason": "Отчислен по ошибке", "order": order("31-о", date(2025, 6, 2))},
        "registrar",
    )

    body = expect(
        backend_web.get(f"{PUPILS}/{pupil_id}/history", "inspector", **PURPOSE), 200
    )

    items = body["items"]
    assert [item["type"] for item in items] == [
        "pupil.registered",
        "pupil.enrolled",
        "pupil.expelled",
        "pupil.expulsion_cancelled",
    ]
    positions = [item["position"] for item in items]
    assert positions == sorted(positions)
    assert items[0]["actor"] == {"name": "Орлова Анна Викторовна", "role": "registrar"}
    assert items[0]["reason"] is None
    assert items[3]["reason"] == "Отчислен по ошибке"
    assert items[0]["recorded_at"].endswith("Z")
    assert items[2]["data"]["expulsion_id"] == expulsion["id"]
    assert body["next_cursor"] is None


def test_history_pages_by_position(backend_web):
    enrolled = enrol_new_pupil(backend_web)
    pupil_id = enrolled["pupil"]["id"]
    for _ in range(3):
        backend_web.attest(pupil_id, enrolled["programme"]["id"])

    first = expect(
        backend_web.get(f"{PUPILS}/{pupil_id}/history", "methodist", {"limit": 3}), 200
    )
    rest = expect(
        backend_web.get(
            f"{PUPILS}/{pupil_id}/history",
            "methodist",
            {"limit": 3, "cursor": first["next_cursor"]},
        ),
        200,
    )

    assert len(first["items"]) == 3
    assert len(rest["items"]) == 2
    assert rest["items"][0]["position"] > first["items"][-1]["position"]
    assert rest["next_cursor"] is None


def test_history_of_unknown_pupil_is_404(web):
    expect_problem(web.get(f"{PUPILS}/{UNKNOWN_ID}/history", "methodist"), 404)


def test_history_is_for_methodist_and_inspector(web):
    pupil = web.register_pupil()

    for role in ("registrar", "specialist", "admin", "subscriber"):
        expect_problem(web.get(f"{PUPILS}/{pupil['id']}/history", role), 403)


def test_history_rejects_cursor_of_a_list(web):
    pupils = [web.register_pupil(surname=surname) for surname in ("Алексеев", "Быков")]
    listed = expect(web.get(PUPILS, "registrar", {"limit": 1}), 200)

    response = web.get(
        f"{PUPILS}/{pupils[0]['id']}/history",
        "methodist",
        {"cursor": listed["next_cursor"]},
    )

    assert "query.cursor" in expect_problem(response, 422)["errors"]


def test_enrolment_effective_before_file_is_allowed_after_opening(web):
    programme = web.create_programme()
    pupil = web.register_pupil(opened_on="2024-08-26")

    answer = web.enrol(pupil["id"], programme["id"], YEAR_START - timedelta(days=1))

    assert answer["effective_date"] == "2024-09-01"


# Attendance after the last day


def attended_on(web: RecordsWebClient, session_date: str) -> dict[str, Any]:
    """Enrol a pupil from 2025-09-02 and list them at a session on `session_date`."""
    programme = web.create_programme()
    pupil = web.register_pupil(opened_on="2025-08-26")
    web.enrol(pupil["id"], programme["id"], date(2025, 9, 2))
    year = {"start": "2025-09-01", "end": "2026-05-29"}
    journal = web.open_journal(programme["id"], academic_year=year)
    web.record_session(journal["id"], {pupil["id"]: "present"}, date=session_date)
    return {"pupil": pupil, "programme": programme, "journal": journal}


@pytest.fixture
def session_dates_today(web):
    """Skip when the 2025/2026 sessions of these tests would lie in the future."""
    if web.today() < date(2025, 10, 6):
        pytest.skip("the sessions of this test lie in the future")


@pytest.mark.usefixtures("session_dates_today")
def test_expulsion_before_attended_session_is_409(backend_web):
    story = attended_on(backend_web, "2025-09-10")
    head = backend_web.head()
    body = expulsion_body(
        story["programme"]["id"],
        effective_date="2025-09-05",
        order=order("40-у", date(2025, 9, 12)),
    )

    response = backend_web.post(
        f"{PUPILS}/{story['pupil']['id']}/expulsions", body, "registrar"
    )

    detail = expect_problem(response, 409)["detail"]
    assert "2025-09-10" in detail
    assert story["journal"]["id"] in detail
    assert backend_web.head() == head


@pytest.mark.usefixtures("session_dates_today")
def test_expulsion_on_last_attended_session(web):
    story = attended_on(web, "2025-09-10")

    answer = web.expel(
        story["pupil"]["id"],
        story["programme"]["id"],
        date(2025, 9, 10),
        order_date=date(2025, 9, 12),
    )

    assert answer["left_centre"] is True


@pytest.mark.usefixtures("session_dates_today")
def test_transfer_before_attended_session_is_409(web):
    story = attended_on(web, "2025-10-05")
    target = web.create_programme("ЛГ-2")
    body = {
        "from_programme_id": story["programme"]["id"],
        "to_programme_id": target["id"],
        "effective_date": "2025-10-01",
        "order": order("5-п", date(2025, 10, 1)),
    }

    response = web.post(f"{PUPILS}/{story['pupil']['id']}/transfers", body, "registrar")

    assert "2025-10-05" in expect_problem(response, 409)["detail"]


# Dates checked against each other and against stored records


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"birth_date": "0001-01-01"}, "birth_date"),
        ({"birth_date": "1899-12-31", "opened_on": "1900-01-01"}, "birth_date"),
        ({"birth_date": "1900-01-01", "opened_on": "1900-01-01"}, "opened_on"),
    ],
)
def test_register_rejects_impossible_dates(web, changes, path):
    response = web.post(PUPILS, pupil_body(**changes), "registrar")

    assert path in expect_problem(response, 422)["errors"]


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"effective_date": "0001-01-01"}, "effective_date"),
        ({"order": order("12-у", date(1, 1, 1))}, "order.date"),
    ],
)
def test_enrol_rejects_dates_before_records(web, changes, path):
    programme = web.create_programme()
    body = {
        "programme_id": programme["id"],
        "effective_date": "2024-09-02",
        "order": order(),
        **changes,
    }

    response = web.post(f"{PUPILS}/{UNKNOWN_ID}/enrolments", body, "registrar")

    assert path in expect_problem(response, 422)["errors"]


def test_enrol_before_birth_is_409(backend_web):
    programme = backend_web.create_programme()
    pupil = backend_web.register_pupil()
    head = backend_web.head()
    body = {
        "programme_id": programme["id"],
        "effective_date": "2015-04-02",
        "order": order("12-у", date(2024, 9, 2)),
    }

    response = backend_web.post(f"{PUPILS}/{pupil['id']}/enrolments", body, "registrar")

    assert "birth date" in expect_problem(response, 409)["detail"]
    assert backend_web.head() == head


def test_earlier_years_enrolment_after_registration_today(web):
    # Registered today without `opened_on`, with an enrolment of a past year
    # and a programme whose approving order is later than that enrolment.
    programme = web.create_programme(approved_order=order("45-о", date(2024, 9, 5)))
    body = pupil_body()
    del body["opened_on"]
    pupil = expect(web.post(PUPILS, body, "registrar"), 201)

    response = web.post(
        f"{PUPILS}/{pupil['id']}/enrolments",
        {
            "programme_id": programme["id"],
            "effective_date": "2023-09-01",
            "order": order("12-у", date(2023, 9, 1)),
        },
        "registrar",
    )

    assert expect(response, 201)["effective_date"] == "2023-09-01"


def test_expulsion_order_before_enrolment_order_is_409(web, enrolled):
    body = expulsion_body(
        enrolled["programme"]["id"], order=order("30-о", date(2024, 9, 1))
    )

    response = web.post(
        f"{PUPILS}/{enrolled['pupil']['id']}/expulsions", body, "registrar"
    )

    assert "2024-09-02" in expect_problem(response, 409)["detail"]


def test_attestation_protocol_before_date_is_422(web, enrolled):
    body = attestation_body(
        enrolled["programme"]["id"], protocol=order("3", date(2024, 12, 19))
    )

    response = web.post(
        f"{PUPILS}/{enrolled['pupil']['id']}/attestations", body, "methodist"
    )

    assert list(expect_problem(response, 422)["errors"]) == ["protocol.date"]


def test_programme_order_before_records_is_422(web):
    response = web.post(
        "/api/v1/programmes",
        programme_body(approved_order=order("45-о", date(1, 1, 1))),
        "admin",
    )

    assert "approved_order.date" in expect_problem(response, 422)["errors"]


def test_duplicate_programme_with_bad_date_is_422(web):
    web.create_programme()

    response = web.post(
        "/api/v1/programmes",
        programme_body(approved_order=order("45-о", date(1, 1, 1))),
        "admin",
    )

    assert "approved_order.date" in expect_problem(response, 422)["errors"]
