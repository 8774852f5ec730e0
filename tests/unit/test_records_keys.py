"""The master key and the key ring of per-pupil data keys."""

from __future__ import annotations

import base64
import stat
from pathlib import Path
from uuid import uuid4

import pytest

from services.records.keys import (
    KEY_CACHE_SECONDS,
    DataKeyDestroyedError,
    DataKeyMissingError,
    MasterKey,
    MasterKeyError,
    MemoryKeyRing,
    SqlKeyRing,
    load_master_key,
)
from shared.config import Settings


def settings_for(tmp_path: Path, **env: str) -> Settings:
    return Settings.from_env(environ=env, data_dir=tmp_path)


def encoded(secret: bytes) -> str:
    return base64.b64encode(secret).decode()


# The master key


def test_key_from_variable(tmp_path):
    secret = bytes(range(32))
    settings = settings_for(tmp_path, PUPIL_RECORDS_MASTER_KEY=encoded(secret))

    key = load_master_key(settings)

    assert key.fingerprint() == MasterKey(secret).fingerprint()
    assert not (tmp_path / "master.key").exists()


def test_missing_key_file_created_private(tmp_path):
    settings = settings_for(tmp_path)

    created = load_master_key(settings)
    again = load_master_key(settings)

    path = tmp_path / "master.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(base64.b64decode(path.read_text())) == 32
    assert again.fingerprint() == created.fingerprint()


def test_key_file_setting_used(tmp_path):
    path = tmp_path / "keys" / "records.key"
    path.parent.mkdir()
    path.write_text(encoded(bytes(32)) + "\n")
    settings = settings_for(tmp_path, PUPIL_RECORDS_MASTER_KEY_FILE=str(path))

    assert load_master_key(settings).fingerprint() == MasterKey(bytes(32)).fingerprint()


def test_production_without_key_fails(tmp_path):
    settings = settings_for(tmp_path, PUPIL_RECORDS_ENV="production")

    with pytest.raises(MasterKeyError, match="no master key in production mode"):
        load_master_key(settings)
    assert not (tmp_path / "master.key").exists()


def test_production_reads_existing_file(tmp_path):
    (tmp_path / "master.key").write_text(encoded(bytes(32)))
    settings = settings_for(tmp_path, PUPIL_RECORDS_ENV="production")

    assert load_master_key(settings).fingerprint() == MasterKey(bytes(32)).fingerprint()


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not base64!", "not valid base64"),
        (encoded(bytes(16)), "decodes to 16 bytes"),
        ("", "decodes to 0 bytes"),
    ],
)
def test_malformed_key_rejected(tmp_path, text, problem):
    settings = settings_for(tmp_path, PUPIL_RECORDS_MASTER_KEY=text or " ")

    with pytest.raises(MasterKeyError, match=problem):
        load_master_key(settings)


def test_malformed_key_file_rejected(tmp_path):
    (tmp_path / "master.key").write_text("short")

    with pytest.raises(MasterKeyError, match="master key file"):
        load_master_key(settings_for(tmp_path))


def test_unwritable_key_folder_fails_clearly(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    settings = settings_for(
        tmp_path, PUPIL_RECORDS_MASTER_KEY_FILE=str(blocker / "master.key")
    )

    with pytest.raises(MasterKeyError, match="cannot create the master key file"):
        load_master_key(settings)


def test_key_hidden_from_repr_and_settings(tmp_path):
    secret = bytes(range(32))
    settings = settings_for(tmp_path, PUPIL_RECORDS_MASTER_KEY=encoded(secret))

    assert encoded(secret) not in repr(settings)
    assert encoded(secret) not in repr(load_master_key(settings))


def test_settings_pass_key_to_children(tmp_path):
    settings = settings_for(
        tmp_path,
        PUPIL_RECORDS_MASTER_KEY=encoded(bytes(32)),
        PUPIL_RECORDS_ENV="production",
    )

    child = Settings.from_env(environ=settings.with_env())

    assert child == settings
    assert child.key_file == tmp_path / "master.key"


def test_derived_keys_differ_by_purpose():
    key = MasterKey.generate()

    assert key.derive("a") != key.derive("b")
    assert key.derive("a") == key.derive("a")


# The key ring, on both stores


@pytest.fixture(params=["memory", "sqlite"])
def ring_factory(request, tmp_path):
    """Open key rings on one store: the same ring in memory, or one SQLite file."""
    opened = []
    memory = {}

    def open_ring(master: MasterKey):
        if request.param == "memory":
            ring = memory.setdefault("ring", MemoryKeyRing(master))
        else:
            ring = SqlKeyRing(f"sqlite:///{tmp_path / 'records.sqlite'}", master)
        opened.append(ring)
        return ring

    yield open_ring
    for ring in opened:
        ring.close()


def test_key_made_once_per_pupil(ring_factory):
    ring = ring_factory(MasterKey.generate())
    pupil_id = uuid4()

    first = ring.ensure_key(pupil_id)

    assert len(first) == 32
    assert ring.ensure_key(pupil_id) == first
    assert ring.key_for(pupil_id) == first
    assert ring.ensure_key(uuid4()) != first


def test_new_key_made_without_lookup_and_kept(ring_factory):
    ring = ring_factory(MasterKey.generate())
    pupil_id = uuid4()

    made = ring.new_key(pupil_id)

    assert len(made) == 32
    assert ring.new_key(pupil_id) == made
    assert ring.key_for(pupil_id) == made


def test_new_key_refused_after_destruction(ring_factory):
    ring = ring_factory(MasterKey.generate())
    pupil_id = uuid4()
    ring.new_key(pupil_id)
    ring.destroy(pupil_id)

    with pytest.raises(DataKeyDestroyedError):
        ring.new_key(pupil_id)


def test_unknown_pupil_has_no_key(ring_factory):
    ring = ring_factory(MasterKey.generate())

    with pytest.raises(DataKeyMissingError):
        ring.key_for(uuid4())


def test_destroyed_key_gone_for_good(ring_factory):
    ring = ring_factory(MasterKey.generate())
    pupil_id = uuid4()
    ring.ensure_key(pupil_id)

    assert ring.destroy(pupil_id) is True
    assert ring.destroy(pupil_id) is False
    assert ring.key_for(pupil_id) is None
    assert ring.is_destroyed(pupil_id)
    with pytest.raises(DataKeyDestroyedError):
        ring.ensure_key(pupil_id)


def test_destroyed_among_reads_once(ring_factory):
    ring = ring_factory(MasterKey.generate())
    kept, destroyed, unknown = uuid4(), uuid4(), uuid4()
    for pupil_id in (kept, destroyed):
        ring.ensure_key(pupil_id)
    ring.destroy(destroyed)

    assert ring.destroyed_among([kept, destroyed, unknown]) == {destroyed}
    assert ring.destroyed_among([]) == set()
    assert ring.key_for(kept) is not None


def test_destroying_unknown_pupil_blocks_new_key(ring_factory):
    ring = ring_factory(MasterKey.generate())
    pupil_id = uuid4()

    ring.destroy(pupil_id)

    with pytest.raises(DataKeyDestroyedError):
        ring.ensure_key(pupil_id)


def test_sqlite_key_shared_between_rings(tmp_path):
    master = MasterKey.generate()
    url = f"sqlite:///{tmp_path / 'records.sqlite'}"
    writer, reader = SqlKeyRing(url, master), SqlKeyRing(url, master)
    try:
        pupil_id = uuid4()

        assert reader.ensure_key(pupil_id) == writer.ensure_key(pupil_id)
    finally:
        writer.close()
        reader.close()


def test_other_process_destruction_seen(tmp_path):
    master = MasterKey.generate()
    url = f"sqlite:///{tmp_path / 'records.sqlite'}"
    now = [0.0]
    destroyer = SqlKeyRing(url, master)
    cached = SqlKeyRing(url, master)
    cached._clock = lambda: now[0]
    try:
        pupil_id = uuid4()
        cached.ensure_key(pupil_id)
        destroyer.destroy(pupil_id)

        # Within the cache time the other ring still has the key, but a
        # fresh check, as the command path makes, learns of the destruction.
        assert cached.key_for(pupil_id) is not None
        now[0] += KEY_CACHE_SECONDS + 1
        assert cached.key_for(pupil_id) is None
    finally:
        destroyer.close()
        cached.close()


def test_fresh_check_drops_cached_key(tmp_path):
    master = MasterKey.generate()
    url = f"sqlite:///{tmp_path / 'records.sqlite'}"
    destroyer, cached = SqlKeyRing(url, master), SqlKeyRing(url, master)
    try:
        pupil_id = uuid4()
        cached.ensure_key(pupil_id)
        destroyer.destroy(pupil_id)

        assert cached.is_destroyed(pupil_id)
        assert cached.key_for(pupil_id) is None
    finally:
        destroyer.close()
        cached.close()


def test_wrong_master_key_fails_at_start(tmp_path):
    url = f"sqlite:///{tmp_path / 'records.sqlite'}"
    SqlKeyRing(url, MasterKey.generate()).close()

    with pytest.raises(MasterKeyError, match="not the one this records database"):
        SqlKeyRing(url, MasterKey.generate())


def test_destroyed_key_leaves_no_bytes(tmp_path):
    url = f"sqlite:///{tmp_path / 'records.sqlite'}"
    ring = SqlKeyRing(url, MasterKey.generate())
    try:
        pupil_id = uuid4()
        ring.ensure_key(pupil_id)
        with ring.reader.connect() as connection:
            wrapped = connection.exec_driver_sql(
                "SELECT wrapped_key FROM pupil_data_keys"
            ).scalar_one()

        ring.destroy(pupil_id)
        ring.scrub()

        for path in tmp_path.glob("records.sqlite*"):
            assert wrapped not in path.read_bytes(), path.name
    finally:
        ring.close()


def test_load_keys_reads_once(ring_factory, monkeypatch):
    master = MasterKey.generate()
    maker = ring_factory(master)
    kept, destroyed, unknown = uuid4(), uuid4(), uuid4()
    made = {pupil_id: maker.ensure_key(pupil_id) for pupil_id in (kept, destroyed)}
    maker.destroy(destroyed)
    # On SQLite this is a second ring on the same file, with an empty cache.
    ring = ring_factory(master)
    reads = []
    original = ring._read_many

    def counted(pupil_ids):
        reads.append(set(pupil_ids))
        return original(pupil_ids)

    monkeypatch.setattr(ring, "_read_many", counted)
    monkeypatch.setattr(ring, "_read", lambda pupil_id: pytest.fail("read one key"))

    ring.load_keys([kept, destroyed, unknown])
    ring.load_keys([kept])

    assert len(reads) == 1
    assert unknown in reads[0]
    assert ring.key_for(kept) == made[kept]
    assert ring.key_for(destroyed) is None
