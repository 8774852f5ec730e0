"""Destruction of personal data across the running services, then their files.

A pupil with a rare name is recorded through the HTTP API of `pupil-records
run` and their personal data are destroyed. Once the services stop, nothing
in the data dir (databases, write-ahead logs, process logs), the run's output
or a `pg_dump` of the databases may contain the name or the remarks.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests import pg_server
from tests.e2e.helpers import RunningServices, expect, order, requires_services

pytestmark = [pytest.mark.e2e, requires_services]

SURNAME = "Шпекторовская"
NAME = "Агриппина"
PATRONYMIC = "Евлампиевна"
REMARK = "семья уехала в Усть-Цильму"
SECRETS = (SURNAME, NAME, PATRONYMIC, REMARK)


def stored_forms(text: str) -> list[bytes]:
    """Return the byte forms in which the stores or logs would keep `text`."""
    forms = set()
    for variant in (text, text.lower()):
        escaped = json.dumps(variant)[1:-1]
        forms.update(
            {
                variant.encode(),
                escaped.encode(),
                escaped.replace("\\", "\\\\").encode(),
            }
        )
    return sorted(forms)


def secrets_in(data: bytes) -> list[str]:
    return [s for s in SECRETS if any(form in data for form in stored_forms(s))]


def dump_databases(services: RunningServices) -> bytes:
    """Return a plain-text dump of the run's PostgreSQL databases, if it has them."""
    urls = [
        services.database_env[name]
        for name in ("RECORDS_DATABASE_URL", "ARCHIVE_DATABASE_URL")
        if name in services.database_env
    ]
    if not urls:
        return b""
    binaries = (pg_server.find_binaries() / "initdb").resolve().parent
    dumps = []
    for url in urls:
        parsed = make_url(url)
        done = subprocess.run(
            [
                str(binaries / "pg_dump"),
                "--host=127.0.0.1",
                f"--port={parsed.port}",
                f"--username={parsed.username}",
                "--no-password",
                str(parsed.database),
            ],
            capture_output=True,
            check=True,
            timeout=60,
        )
        dumps.append(done.stdout)
    return b"".join(dumps)


def files_of(services: RunningServices) -> dict[Path, bytes]:
    """Return every file of the run's data dir, and its output."""
    paths = [path for path in services.data_dir.rglob("*") if path.is_file()]
    paths.append(services.output_path)
    return {path: path.read_bytes() for path in paths}


def test_destroyed_pupil_leaves_no_trace(
    start_services: Callable[..., RunningServices],
) -> None:
    services = start_services()
    records = services.records
    programme = records.create_programme()
    pupil = records.register_pupil(
        surname=SURNAME, name=NAME, patronymic=PATRONYMIC, birth_date="2015-06-01"
    )
    pupil_id = pupil["id"]
    records.enrol(pupil_id, programme["id"], date(2024, 9, 2))
    records.post_json(
        f"/api/v1/pupils/{pupil_id}/attestations",
        {
            "programme_id": programme["id"],
            "kind": "intermediate",
            "date": "2024-12-20",
            "scores": {"speech": 7, "contact": 11},
            "protocol": order("3-П", date(2024, 12, 20)),
        },
        role="methodist",
    )
    records.post_json(
        f"/api/v1/pupils/{pupil_id}/expulsions",
        {
            "programme_id": programme["id"],
            "effective_date": "2025-03-31",
            "ground": "other",
            "ground_detail": REMARK,
            "order": order("40-О", date(2025, 3, 31)),
        },
        role="registrar",
    )
    before = records.personal_file(pupil_id, min_position=records_head(services))
    assert before["surname"] == SURNAME
    # The read models contain the name now, so the search does find it.
    stored = b"".join(files_of(services).values()) + dump_databases(services)
    assert SURNAME in secrets_in(stored)

    destruction = records.post_json(
        f"/api/v1/pupils/{pupil_id}/personal-data-destruction",
        {"act": order("ЭК-7", date(2025, 6, 2)), "reason": "истёк срок хранения"},
        role="archivist",
    )
    position = destruction["position"]
    file_response = records.get(
        f"/api/v1/pupils/{pupil_id}", role="registrar", min_position=position
    )
    history = records.get_json(
        f"/api/v1/pupils/{pupil_id}/history", role="methodist", min_position=position
    )
    retention = services.archive.personal_file_retention(pupil_id, position)
    assert services.stop() == 0

    assert expect(file_response, 410)["act"] == {"number": "ЭК-7", "date": "2025-06-02"}
    assert [item["data"] for item in history["items"][:-1]] == [None] * (
        len(history["items"]) - 1
    )
    assert retention["status"] == "destroyed"
    files = files_of(services)
    assert any(path.suffix == ".log" for path in files)
    for path, data in files.items():
        assert secrets_in(data) == [], path
    assert secrets_in(dump_databases(services)) == []


def records_head(services: RunningServices) -> int:
    page = services.records.get_json("/api/v1/events", role="admin", limit=1)
    return int(page["head_position"])
