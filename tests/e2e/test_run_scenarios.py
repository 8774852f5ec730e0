"""Domain scenarios across both services, started as `pupil-records run` starts them."""

from __future__ import annotations

from datetime import date
from zoneinfo import ZoneInfo

import pytest
import requests

from shared.clock import today_in
from shared.config import DEFAULT_TIMEZONE
from tests.e2e.helpers import (
    ProcessStack,
    RecordsClient,
    RunningServices,
    requires_services,
    wait_until,
)

pytestmark = [pytest.mark.e2e, requires_services]


def centre_today() -> date:
    return today_in(ZoneInfo(DEFAULT_TIMEZONE))


def add_years(day: date, years: int) -> date:
    """Return the same day `years` later; 29 February becomes 28 February."""
    try:
        return day.replace(year=day.year + years)
    except ValueError:
        return day.replace(year=day.year + years, day=28)


def pupil_who_left(records: RecordsClient) -> tuple[str, int, date]:
    """Register, enrol and expel a pupil today; return its id, position, closure."""
    today = centre_today()
    programme = records.create_programme()
    pupil = records.register_pupil()
    records.enrol(pupil["id"], programme["id"], today)
    expulsion = records.expel(pupil["id"], programme["id"], today)

    personal_file = records.personal_file(pupil["id"], expulsion["position"])
    closed_on = date.fromisoformat(personal_file["file_closed_on"])
    assert personal_file["status"] == "left"
    assert expulsion["left_centre"] is True
    return pupil["id"], expulsion["position"], closed_on


def test_expelled_pupil_gets_deadline(services: RunningServices) -> None:
    pupil_id, position, closed_on = pupil_who_left(services.records)

    entry = services.archive.personal_file_retention(pupil_id, position)

    assert entry["record_class"] == "personal_file"
    assert entry["subject_id"] == pupil_id
    assert entry["status"] == "retained"
    assert entry["closed_on"] == closed_on.isoformat()
    assert entry["closure_year"] == closed_on.year
    assert entry["period_years"] == 5
    assert entry["destroyable_from"] == f"{closed_on.year + 6}-01-01"
    assert entry["kept_at_least_until"] == add_years(closed_on, 5).isoformat()
    assert entry["position"] == position


def test_enrolled_pupil_file_stays_open(services: RunningServices) -> None:
    today = centre_today()
    records = services.records
    programme = records.create_programme()
    pupil = records.register_pupil()
    enrolment = records.enrol(pupil["id"], programme["id"], today)

    entry = services.archive.personal_file_retention(pupil["id"], enrolment["position"])

    assert entry["status"] == "open"
    assert entry["closed_on"] is None
    assert entry["destroyable_from"] is None


def test_feed_carries_expulsion(services: RunningServices) -> None:
    pupil_id, position, closed_on = pupil_who_left(services.records)

    page = services.records.get_json(
        "/api/v1/events",
        role="subscriber",
        after=position - 1,
        type="pupil.expelled",
    )

    [event] = [e for e in page["events"] if e["data"]["pupil_id"] == pupil_id]
    assert event["subject"] == f"pupils/{pupil_id}"
    assert event["position"] == position
    assert event["data"]["left_centre"] is True
    assert event["data"]["effective_date"] == closed_on.isoformat()


def test_archive_catches_up_after_records_restart(stack: ProcessStack) -> None:
    first_id, first_position, _ = pupil_who_left(stack.records)
    stack.archive.personal_file_retention(first_id, first_position)

    stack.kill("records-web")
    with pytest.raises(requests.ConnectionError):
        requests.get(stack.records_url + "/healthz", timeout=5)
    archive_health = requests.get(stack.archive_url + "/healthz", timeout=5)
    stack.restart("records-web")
    stack.wait_ready()

    second_id, second_position, _ = pupil_who_left(stack.records)
    second = stack.archive.personal_file_retention(second_id, second_position)
    first = stack.archive.personal_file_retention(first_id, first_position)

    def caught_up() -> dict[str, int] | None:
        status = stack.archive.get_json("/api/v1/status", role="archivist")
        return status if status["processed_position"] >= second_position else None

    status = wait_until(caught_up, 60, "the archive status to catch up")

    assert archive_health.status_code == 200
    assert second["status"] == "retained"
    assert first["status"] == "retained"
    assert first["position"] == first_position
    assert status["lag"] == status["records_head"] - status["processed_position"]
