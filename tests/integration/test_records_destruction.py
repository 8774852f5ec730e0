"""Destruction of a pupil's personal data: the command, the purge, the replay.

Every test runs on the in-memory store, a SQLite file and PostgreSQL,
whatever `PUPIL_RECORDS_TEST_BACKENDS` says.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import date
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import Engine

from services.archive.application import ArchiveApplication
from services.archive.domain.deadlines import RetentionStatus
from services.archive.domain.schedule import load_schedule
from services.archive.feed import parse_page
from services.archive.readmodels import RetentionProjector, get_entry
from services.records.application import RecordsApplication
from services.records.domain.errors import (
    DuplicatePupilError,
    PersonalDataDestroyedError,
    RuleViolationError,
)
from services.records.domain.pupils import PERSONAL_DATA_CATEGORIES
from services.records.feed import read_feed
from services.records.keys import MasterKey
from services.records.projector import RecordsProjector
from services.records.readmodels import RecordsReadModels, metadata
from services.records.rebuild import rebuild_online
from shared.actor import Principal, acting_as
from shared.config import Settings
from shared.storage import create_sql_engine, eventsourcing_env
from tests.conftest import BACKENDS, REGISTRAR, read_models_engine
from tests.records_helpers import (
    PEOPLE,
    Centre,
    dump_read_models,
    enrol,
    expel,
    order,
    populate,
    record_session,
    register_pupil,
    scores,
)

ARCHIVIST = Principal(token_id="token-archivist", name="Белова Нина", role="archivist")
ACT = order("ЭК-3/2031", date(2031, 2, 1))
REASON = "истёк срок хранения личного дела"
STORES = [
    pytest.param("memory"),
    pytest.param("sqlite"),
    pytest.param("postgres", marks=pytest.mark.postgres),
]


@pytest.fixture(params=STORES)
def store_url(request: pytest.FixtureRequest) -> str:
    """A fresh records store on each backend."""
    return BACKENDS[request.param](request, "records")


@pytest.fixture
def master_key() -> MasterKey:
    return MasterKey.generate()


@pytest.fixture
def app(store_url: str, master_key: MasterKey) -> Iterator[RecordsApplication]:
    application = RecordsApplication(store_url, master_key=master_key)
    yield application
    application.close()


@pytest.fixture
def engine(store_url: str) -> Iterator[Engine]:
    read_engine = read_models_engine(store_url)
    yield read_engine
    read_engine.dispose()


@pytest.fixture
def centre(app: RecordsApplication) -> Centre:
    """The populated centre, with Maria expelled from her last programme too."""
    with acting_as(REGISTRAR):
        stored = populate(app)
        expel(
            app,
            stored.pupils["maria"],
            stored.programmes["psy"],
            date(2025, 5, 30),
            "completed",
        )
    return stored


def destroy(app: RecordsApplication, pupil_id: UUID, act: dict[str, Any] = ACT) -> Any:
    with acting_as(ARCHIVIST):
        return app.destroy_personal_data(pupil_id, act=act, reason=REASON)


def dumped(engine: Engine) -> str:
    return json.dumps(dump_read_models(engine), ensure_ascii=False, default=str)


def test_record_of_destruction(app, centre):
    maria = centre.pupils["maria"]

    result = destroy(app, maria)

    record = result.resource
    assert record["subject"] == str(maria)
    assert record["pupil_id"] == maria
    assert record["categories"] == list(PERSONAL_DATA_CATEGORIES)
    assert record["system"] == "pupil-records"
    assert "crypto-shredding" in record["method"]
    assert record["reason"] == REASON
    assert record["act"] == ACT
    assert record["actor"] == {"name": ARCHIVIST.name, "role": "archivist"}
    assert record["destroyed_at"].tzinfo is not None
    assert result.position == app.head_position()
    assert app.destruction(maria) == record


def test_open_file_not_destroyed(app, centre):
    head = app.head_position()

    for key in ("gleb", "lev"):
        with pytest.raises(RuleViolationError, match="left the centre"):
            destroy(app, centre.pupils[key])

    assert app.head_position() == head
    assert not app.key_ring.is_destroyed(centre.pupils["gleb"])


def test_act_before_closure_refused(app, centre):
    with pytest.raises(RuleViolationError, match="predate"):
        destroy(app, centre.pupils["maria"], order("1", date(2025, 5, 29)))


def test_writes_after_destruction_refused(app, centre):
    maria, vera = centre.pupils["maria"], centre.pupils["vera"]
    psy = centre.programmes["psy"]
    destroy(app, maria)
    destroy(app, vera)
    attestation_id = next(iter(app.pupil(maria).attestations))
    expulsion_id = app.pupil(vera).leaving_expulsion.id
    head = app.head_position()
    writes = [
        lambda: enrol(app, maria, psy, date(2025, 9, 1)),
        lambda: expel(app, maria, psy, date(2025, 9, 1), "completed"),
        lambda: app.cancel_expulsion(
            vera, expulsion_id, order=order("2", date(2025, 6, 3)), reason="ошибка"
        ),
        lambda: app.record_attestation(
            maria,
            programme_id=psy,
            kind="final",
            on=date(2025, 5, 20),
            scores=scores(),
            protocol=order("9-п", date(2025, 5, 20)),
        ),
        lambda: app.correct_attestation(
            maria, attestation_id, scores=scores(1, 1, 1), reason="пересчёт"
        ),
        lambda: record_session(
            app, centre.journals["speech"], date(2025, 5, 26), {maria: "present"}
        ),
        lambda: destroy(app, maria),
    ]

    with acting_as(REGISTRAR):
        for write in writes:
            with pytest.raises(PersonalDataDestroyedError, match="ЭК-3/2031"):
                write()

    assert app.head_position() == head


def test_projector_purges_read_models(app, engine, centre):
    maria, gleb = centre.pupils["maria"], centre.pupils["gleb"]
    projector = RecordsProjector(app, engine)
    projector.catch_up()
    read_models = RecordsReadModels(engine)
    assert "Алексеева" in dumped(engine)

    position = destroy(app, maria).position
    projector.catch_up()

    tombstone = read_models.personal_file(maria)
    assert tombstone["status"] == "destroyed"
    assert tombstone["act"] == {"number": "ЭК-3/2031", "date": "2031-02-01"}
    assert tombstone["attendance"] == []
    assert "surname" not in tombstone
    items, _ = read_models.pupils(limit=100)
    assert maria not in {UUID(item["id"]) for item in items}
    assert gleb in {UUID(item["id"]) for item in items}
    history, _ = read_models.history(maria, limit=100)
    assert [entry["data"] for entry in history[:-1]] == [None] * (len(history) - 1)
    assert [entry["reason"] for entry in history[:-1]] == [None] * (len(history) - 1)
    assert history[0]["type"] == "pupil.registered"
    assert history[0]["actor"] == {"name": REGISTRAR.name, "role": "registrar"}
    assert history[-1]["type"] == "pupil.personal_data_destroyed"
    assert history[-1]["position"] == position
    assert history[-1]["reason"] == REASON
    for key in ("psy", "speech"):
        journal = read_models.journal(centre.journals[key])
        lines = [line for s in journal["sessions"] for line in s["attendance"]]
        assert str(maria) not in {line["pupil_id"] for line in lines}
        assert str(gleb) in {line["pupil_id"] for line in lines}
    assert read_models.personal_file(gleb)["attendance"]
    assert "Алексеева" not in dumped(engine)
    assert "Мария" not in dumped(engine)


def test_rebuild_never_resurrects(app, engine, centre):
    projector = RecordsProjector(app, engine)
    projector.process_batch(batch_size=9)
    destroy(app, centre.pupils["maria"])
    destroy(app, centre.pupils["vera"])
    projector.catch_up(batch_size=7)
    incremental = dump_read_models(engine)

    metadata.drop_all(engine)
    metadata.create_all(engine)
    RecordsProjector(app, engine).catch_up(batch_size=5)

    assert dump_read_models(engine) == incremental
    text = dumped(engine)
    for surname, _name, patronymic, _born in (PEOPLE["maria"], PEOPLE["vera"]):
        assert surname not in text
        assert patronymic not in text
    assert "переезд семьи" not in text
    assert PEOPLE["gleb"][0] in text


@pytest.mark.parametrize("store_url", STORES[1:], indirect=True)
def test_online_rebuild_never_resurrects(
    app, engine, centre, store_url, master_key, tmp_path
):
    settings = Settings.from_env(
        environ={
            "RECORDS_DATABASE_URL": store_url,
            "PUPIL_RECORDS_MASTER_KEY": master_key.to_base64(),
        },
        data_dir=tmp_path,
    )
    projector = RecordsProjector(app, engine)
    projector.catch_up()
    destroy(app, centre.pupils["maria"])
    projector.catch_up()
    incremental = dump_read_models(engine)

    rebuild_online(settings, progress=False)

    assert dump_read_models(engine) == incremental
    assert PEOPLE["maria"][0] not in dumped(engine)


def test_destroyed_pupil_decodes_without_data(app, centre):
    maria = centre.pupils["maria"]
    destroy(app, maria)

    pupil = app.pupil(maria)

    assert (pupil.surname, pupil.name, pupil.birth_date) == (None, None, None)
    assert pupil.is_destroyed
    assert pupil.status == "left"
    (attestation,) = pupil.attestations.values()
    assert (attestation.scores, attestation.total, attestation.level) == (
        None,
        None,
        None,
    )
    assert app.pupil(centre.pupils["gleb"]).surname == PEOPLE["gleb"][0]


def test_cached_pupil_forgotten_after_key_loss(app, centre):
    maria = centre.pupils["maria"]
    assert app.pupil(maria).surname == PEOPLE["maria"][0]

    # Another process destroyed the key; this one has the pupil cached.
    app.key_ring.destroy(maria)

    assert app.pupil(maria).surname is None


def test_feed_announces_destruction(app, centre):
    maria = centre.pupils["maria"]
    result = destroy(app, maria)

    page = read_feed(app, after=0, limit=1000)

    (event,) = [
        e for e in page["events"] if e["type"] == "pupil.personal_data_destroyed"
    ]
    assert event["subject"] == f"pupils/{maria}"
    assert event["position"] == result.position
    assert event["data"] == {
        "pupil_id": str(maria),
        "act": {"number": "ЭК-3/2031", "date": "2031-02-01"},
        "destroyed_at": event["data"]["destroyed_at"],
    }
    assert event["data"]["destroyed_at"].endswith("Z")
    text = json.dumps(page, ensure_ascii=False)
    assert PEOPLE["maria"][0] not in text
    assert REASON not in text


def test_archive_marks_file_destroyed(app, centre):
    maria = centre.pupils["maria"]
    destroy(app, maria)
    page = parse_page(read_feed(app, after=0, limit=1000), after=0)
    archive = ArchiveApplication(env=eventsourcing_env("memory://"))
    archive_engine = create_sql_engine("memory://", writer=True)
    projector = RetentionProjector(archive, archive_engine, load_schedule())
    projector.prepare()

    archive.apply_page(page)
    projector.catch_up()

    entry = get_entry(archive_engine, "personal_file", maria)
    assert entry.status(date(2031, 3, 1)) is RetentionStatus.DESTROYED
    assert entry.destruction.act_number == "ЭК-3/2031"
    archive_engine.dispose()
    archive.close()


def test_same_person_registers_again(app, centre):
    surname, name, patronymic, born = PEOPLE["maria"]
    destroy(app, centre.pupils["maria"])

    with acting_as(REGISTRAR):
        again = register_pupil(app, surname, name, patronymic, born)
        with pytest.raises(DuplicatePupilError) as raised:
            register_pupil(app, surname, name, patronymic, born)

    assert again != centre.pupils["maria"]
    assert raised.value.existing_id == again
    assert app.pupil(again).surname == surname


def test_projector_finishes_interrupted_destruction(
    app, engine, centre, monkeypatch, store_url, master_key
):
    maria = centre.pupils["maria"]
    # The process stops after the event is stored and before the key goes.
    monkeypatch.setattr(app, "_finish_destruction", lambda pupil_id: None)
    destroy(app, maria)
    assert not app.key_ring.is_destroyed(maria)

    RecordsProjector(app, engine).catch_up()

    assert app.key_ring.is_destroyed(maria)
    assert app.key_ring.key_for(maria) is None
    assert "Алексеева" not in dumped(engine)


def test_command_path_finishes_interrupted_destruction(app, centre, monkeypatch):
    maria = centre.pupils["maria"]
    finish = app._finish_destruction
    monkeypatch.setattr(app, "_finish_destruction", lambda pupil_id: None)
    destroy(app, maria)
    monkeypatch.setattr(app, "_finish_destruction", finish)

    with acting_as(REGISTRAR), pytest.raises(PersonalDataDestroyedError):
        enrol(app, maria, centre.programmes["psy"], date(2025, 9, 1))

    assert app.key_ring.is_destroyed(maria)


@pytest.mark.parametrize("store_url", STORES[1:], indirect=True)
def test_other_process_stops_using_key(app, centre, store_url, master_key):
    maria = centre.pupils["maria"]
    other = RecordsApplication(store_url, master_key=master_key)
    try:
        assert other.pupil(maria).surname == PEOPLE["maria"][0]
        destroy(app, maria)

        with acting_as(REGISTRAR), pytest.raises(PersonalDataDestroyedError):
            enrol(other, maria, centre.programmes["psy"], date(2025, 9, 1))

        assert other.key_ring.key_for(maria) is None
        assert other.pupil(maria).surname is None
    finally:
        other.close()


@pytest.mark.parametrize("store_url", STORES[1:], indirect=True)
def test_reopened_store_keeps_destruction(app, centre, store_url, master_key):
    maria = centre.pupils["maria"]
    destroy(app, maria)
    app.close()

    reopened = RecordsApplication(store_url, master_key=master_key)
    try:
        assert reopened.pupil(maria).surname is None
        assert reopened.destruction(maria)["act"] == ACT
        assert reopened.pupil(centre.pupils["gleb"]).surname == PEOPLE["gleb"][0]
    finally:
        reopened.close()
