"""Loading and validating the retention schedule."""

from __future__ import annotations

import copy
import json

import pytest

from services.archive.domain.schedule import (
    DEFAULT_SCHEDULE_PATH,
    ScheduleError,
    load_schedule,
    parse_schedule,
)


@pytest.fixture
def packaged():
    return json.loads(DEFAULT_SCHEDULE_PATH.read_text(encoding="utf-8"))


def test_packaged_schedule_items():
    schedule = load_schedule()
    personal = schedule.item("personal_file")
    journal = schedule.item("journal")

    assert personal.period_years == 5
    assert journal.period_years == 5
    assert personal.counting_rule == "from_january_after_closure"
    assert journal.counting_rule == "from_january_after_closure"
    assert "3.1" in personal.basis
    assert "3.2" in journal.basis
    assert "№ 236" in personal.basis
    assert "20.12.2019" in journal.basis
    assert personal.mark
    assert journal.mark


def test_item_as_dict_has_public_fields():
    item = load_schedule().item("journal")

    assert set(item.as_dict()) == {
        "record_class",
        "period_years",
        "counting_rule",
        "mark",
        "basis",
    }


def test_longer_period_accepted(packaged):
    packaged["items"][0]["period_years"] = 10

    assert parse_schedule(packaged).item("personal_file").period_years == 10


@pytest.mark.parametrize("period", [0, -5, 2.5, "5", True, None])
def test_invalid_period_rejected(packaged, period):
    packaged["items"][1]["period_years"] = period

    with pytest.raises(ScheduleError, match=r"items\[1\]\.period_years"):
        parse_schedule(packaged)


def test_unknown_counting_rule_rejected(packaged):
    packaged["items"][0]["counting_rule"] = "from_expulsion"

    with pytest.raises(ScheduleError, match="counting_rule 'from_expulsion'"):
        parse_schedule(packaged)


def test_unknown_record_class_rejected(packaged):
    packaged["items"][0]["record_class"] = "notebook"

    with pytest.raises(ScheduleError, match="record_class 'notebook' is unknown"):
        parse_schedule(packaged)


def test_missing_record_class_rejected(packaged):
    del packaged["items"][1]

    with pytest.raises(ScheduleError, match="'journal' must appear exactly once"):
        parse_schedule(packaged)


def test_duplicate_record_class_rejected(packaged):
    packaged["items"].append(copy.deepcopy(packaged["items"][0]))

    with pytest.raises(ScheduleError, match="'personal_file' must appear exactly"):
        parse_schedule(packaged)


def test_unknown_field_rejected(packaged):
    packaged["items"][0]["periodyears"] = 5

    with pytest.raises(ScheduleError, match="unknown fields: periodyears"):
        parse_schedule(packaged)


def test_missing_field_rejected(packaged):
    del packaged["items"][0]["basis"]

    with pytest.raises(ScheduleError, match="is missing fields: basis"):
        parse_schedule(packaged)


def test_blank_basis_rejected(packaged):
    packaged["items"][0]["basis"] = "  "

    with pytest.raises(ScheduleError, match=r"items\[0\]\.basis"):
        parse_schedule(packaged)


@pytest.mark.parametrize("data", [[], {"items": {}}, {"records": []}, None])
def test_wrong_shape_rejected(data):
    with pytest.raises(ScheduleError, match='list "items"'):
        parse_schedule(data)


def test_file_not_json_rejected(tmp_path):
    path = tmp_path / "schedule.json"
    path.write_text("{not json", encoding="utf-8")

    with pytest.raises(ScheduleError, match="is not valid JSON"):
        load_schedule(path)


def test_missing_file_rejected(tmp_path):
    with pytest.raises(ScheduleError, match="cannot read the schedule"):
        load_schedule(tmp_path / "absent.json")


def test_invalid_file_names_path(tmp_path, packaged):
    packaged["items"][0]["period_years"] = 0
    path = tmp_path / "schedule.json"
    path.write_text(json.dumps(packaged), encoding="utf-8")

    with pytest.raises(ScheduleError, match="schedule.json"):
        load_schedule(path)


def test_file_with_bom_loads(tmp_path, packaged):
    path = tmp_path / "schedule.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(packaged).encode("utf-8"))

    assert load_schedule(path).item("journal").period_years == 5


def test_fingerprint_follows_content(packaged):
    before = parse_schedule(packaged).fingerprint
    same = parse_schedule(copy.deepcopy(packaged)).fingerprint
    packaged["items"][1]["period_years"] = 6
    after = parse_schedule(packaged).fingerprint

    assert before == same
    assert before != after
