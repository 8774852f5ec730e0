"""Per-pupil data keys, wrapped by the master key: the basis of crypto-shredding.

Every pupil's personal data in the records log are encrypted with a 256-bit
data key of their own. The key ring keeps each data key wrapped (AES-GCM) by a
key derived from the master key, in the `pupil_data_keys` table of the records
database, or in process memory for the `memory://` store. Destroying a pupil's
key overwrites and deletes the wrapped key but keeps the row, with its
`destroyed_at`, so that no new key can ever be made for that pupil again.

The master key is base64 of 32 bytes, from `PUPIL_RECORDS_MASTER_KEY` or the
key file (`PUPIL_RECORDS_MASTER_KEY_FILE`, default `<data dir>/master.key`).
Outside production mode a missing key file is created with mode 0600.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import stat
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    LargeBinary,
    MetaData,
    String,
    Table,
    bindparam,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, IntegrityError, SQLAlchemyError

from shared.clock import iso_utc, utc_now
from shared.config import ConfigurationError, Settings
from shared.storage import create_sql_engine, is_memory

logger = logging.getLogger(__name__)

KEY_BYTES = 32
NONCE_BYTES = 12
# How long a process keeps an unwrapped data key in its cache. Reads that use
# the cache learn of a destruction by another process within this time. The
# command path and the projector check the database at once.
KEY_CACHE_SECONDS = 30.0
KEY_CACHE_SIZE = 10_000
# Keys read by one statement of `load_keys`.
KEYS_PER_READ = 500
CHECKPOINT_ATTEMPTS = 20
CHECKPOINT_PAUSE_SECONDS = 0.1
MASTER_FINGERPRINT_NAME = "master"
# The key table is always the live one, even on a connection whose
# schema_translate_map points the read models at other tables (online rebuild).
LIVE_TABLES: dict[str, Any] = {"schema_translate_map": {None: None}}

key_metadata = MetaData()

pupil_data_keys = Table(
    "pupil_data_keys",
    key_metadata,
    Column("pupil_id", String(36), primary_key=True),
    # nonce + AES-GCM ciphertext of the data key; NULL once destroyed.
    Column("wrapped_key", LargeBinary),
    Column("created_at", String(40), nullable=False),
    Column("destroyed_at", String(40)),
)

DESTROYED_KEY_QUERY = select(pupil_data_keys.c.pupil_id).where(
    pupil_data_keys.c.pupil_id == bindparam("pupil_id"),
    pupil_data_keys.c.destroyed_at.is_not(None),
)

# The fingerprint of the master key that wrapped this database's data keys,
# so that a wrong master key fails at start-up.
key_ring_fingerprints = Table(
    "pupil_data_key_fingerprints",
    key_metadata,
    Column("name", String(32), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
)


class KeyRingError(Exception):
    """Root of the key ring's errors."""


class MasterKeyError(KeyRingError, ConfigurationError):
    """The master key is missing, malformed, or not the one that wrapped the keys."""


class DataKeyMissingError(KeyRingError):
    """Sealed data name a pupil who never had a data key."""


class DataKeyDestroyedError(KeyRingError):
    """A pupil's data key was destroyed, so nothing can be encrypted for them."""

    def __init__(self, pupil_id: UUID) -> None:
        super().__init__(f"the data key of pupil {pupil_id} was destroyed")
        self.pupil_id = pupil_id


class MasterKey:
    """The 256-bit secret from which the wrapping and identity keys are derived."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) != KEY_BYTES:
            raise MasterKeyError(
                f"the master key must be {KEY_BYTES} bytes, not {len(secret)}"
            )
        self._secret = secret

    def __repr__(self) -> str:
        return f"MasterKey(fingerprint={self.fingerprint()!r})"

    @classmethod
    def generate(cls) -> MasterKey:
        """Return a new random master key."""
        return cls(os.urandom(KEY_BYTES))

    @classmethod
    def from_base64(cls, text: str, source: str) -> MasterKey:
        """Decode a key given as base64 text; `source` names it in errors."""
        try:
            secret = base64.b64decode(text.strip(), validate=True)
        except (binascii.Error, ValueError):
            raise MasterKeyError(
                f"{source} is not valid base64; it must hold base64 of "
                f"{KEY_BYTES} random bytes"
            ) from None
        if len(secret) != KEY_BYTES:
            raise MasterKeyError(
                f"{source} decodes to {len(secret)} bytes; it must hold base64 of "
                f"{KEY_BYTES} random bytes"
            )
        return cls(secret)

    def to_base64(self) -> str:
        """Return the key as base64 text, as the key file and the setting hold it."""
        return base64.b64encode(self._secret).decode("ascii")

    def derive(self, purpose: str) -> bytes:
        """Derive a 256-bit key for one `purpose` with HKDF-SHA256."""
        hkdf = HKDF(
            algorithm=hashes.SHA256(),
            length=KEY_BYTES,
            salt=None,
            info=f"pupil-records/{purpose}".encode(),
        )
        return hkdf.derive(self._secret)

    def fingerprint(self) -> str:
        """Return a hex fingerprint that identifies the key without revealing it."""
        return self.derive("fingerprint")[:16].hex()


def load_master_key(settings: Settings) -> MasterKey:
    """Return the master key of these settings: the variable, else the key file.

    Outside production mode a missing key file is created; in production mode
    a missing key raises `MasterKeyError`.
    """
    if settings.master_key:
        return MasterKey.from_base64(settings.master_key, "PUPIL_RECORDS_MASTER_KEY")
    path = settings.key_file
    if path.exists():
        return _read_key_file(path)
    if settings.production:
        raise MasterKeyError(
            f"no master key in production mode: set PUPIL_RECORDS_MASTER_KEY to "
            f"base64 of {KEY_BYTES} random bytes, or restore the key file {path} "
            "(PUPIL_RECORDS_MASTER_KEY_FILE) from its backup; a new key is only "
            "generated outside production mode"
        )
    return _create_key_file(path)


def default_master_key(database_url: str) -> MasterKey:
    """Return the master key for a store opened without one.

    `memory://` gets a fresh key that lives as long as the process. Otherwise
    the key comes from the environment; a SQLite store's default key file is
    `master.key` beside the database file, as in the default data dir.
    """
    if is_memory(database_url):
        return MasterKey.generate()
    settings = Settings.from_env()
    parsed = make_url(database_url)
    if parsed.get_backend_name() == "sqlite" and parsed.database:
        folder = Path(parsed.database).expanduser().absolute().parent
        settings = Settings.from_env(data_dir=folder)
    return load_master_key(settings)


def _read_key_file(path: Path) -> MasterKey:
    try:
        text = path.read_text(encoding="ascii")
        mode = path.stat().st_mode
    except (OSError, UnicodeDecodeError) as error:
        raise MasterKeyError(
            f"cannot read the master key file {path}: {error}"
        ) from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "the master key file %s is open to other users; run chmod 600 on it", path
        )
    return MasterKey.from_base64(text, f"the master key file {path}")


def _create_key_file(path: Path) -> MasterKey:
    """Write a new key to `path` unless another process wrote one first."""
    try:
        key, created = _link_new_key(path)
    except OSError as error:
        raise MasterKeyError(
            f"cannot create the master key file {path}: {error}; create it, or "
            "set PUPIL_RECORDS_MASTER_KEY"
        ) from None
    if not created:
        return _read_key_file(path)
    logger.warning(
        "created a new master key in %s; back it up: without it no pupil's "
        "personal data can be read",
        path,
    )
    return key


def _link_new_key(path: Path) -> tuple[MasterKey, bool]:
    key = MasterKey.generate()
    path.parent.mkdir(parents=True, exist_ok=True)
    # mkstemp creates the file with mode 0600; linking it into place fails if
    # the file exists, so concurrent starts agree on one key.
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".master.key.")
    try:
        with os.fdopen(descriptor, "w", encoding="ascii") as file:
            file.write(key.to_base64() + "\n")
            file.flush()
            os.fsync(file.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            return key, False
    finally:
        os.unlink(temporary)
    return key, True


@dataclass(frozen=True)
class StoredKey:
    """A row of the key ring: the wrapped key, None once destroyed."""

    wrapped: bytes | None
    destroyed: bool


class KeyRing(ABC):
    """Per-pupil data keys with a short-lived cache of unwrapped keys.

    A process that learns of a key's destruction (it destroyed the key, or
    `is_destroyed` or `key_for` found it destroyed) never uses it again.
    """

    def __init__(
        self, master: MasterKey, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._wrapping = AESGCM(master.derive("data-key-wrapping"))
        self.identity_secret = master.derive("pupil-identity")
        self.fingerprint = master.fingerprint()
        self._clock = clock
        self._lock = threading.Lock()
        # pupil id -> (data key, expiry on the clock, AES-GCM cipher under it)
        self._cache: OrderedDict[UUID, tuple[bytes, float, AESGCM]] = OrderedDict()
        self._destroyed: set[UUID] = set()

    # Storage, implemented per backend

    @abstractmethod
    def _read(self, pupil_id: UUID) -> StoredKey | None:
        """Return the stored key of a pupil, or None when there is none."""

    @abstractmethod
    def _read_many(self, pupil_ids: set[UUID]) -> dict[UUID, StoredKey]:
        """Return the stored keys of those of `pupil_ids` that have one."""

    @abstractmethod
    def _read_destroyed(self, pupil_ids: set[UUID]) -> set[UUID]:
        """Return the pupils among `pupil_ids` whose key was destroyed."""

    @abstractmethod
    def _insert(self, pupil_id: UUID, wrapped: bytes) -> bool:
        """Store a new wrapped key; return False when the pupil has a row already."""

    @abstractmethod
    def _erase(self, pupil_id: UUID, connection: Connection | None) -> bool:
        """Overwrite and delete the wrapped key; return False if already destroyed."""

    @abstractmethod
    def scrub(self) -> None:
        """Remove what the database keeps of destroyed keys outside the table rows."""

    @abstractmethod
    def close(self) -> None:
        """Release the key ring's database connections."""

    # Keys

    def key_for(self, pupil_id: UUID) -> bytes | None:
        """Return the pupil's data key, or None when it was destroyed.

        Raises `DataKeyMissingError` when the pupil never had a key.
        """
        entry = self._entry(pupil_id)
        return None if entry is None else entry[0]

    def cipher_for(self, pupil_id: UUID) -> AESGCM | None:
        """Return an AES-GCM cipher under the pupil's data key, None once destroyed.

        Raises `DataKeyMissingError` when the pupil never had a key.
        """
        entry = self._entry(pupil_id)
        return None if entry is None else entry[2]

    def _entry(self, pupil_id: UUID) -> tuple[bytes, float, AESGCM] | None:
        with self._lock:
            if pupil_id in self._destroyed:
                return None
            cached = self._cache.get(pupil_id)
            if cached is not None and cached[1] > self._clock():
                return cached
        stored = self._read(pupil_id)
        if stored is None:
            raise DataKeyMissingError(f"no data key was ever made for pupil {pupil_id}")
        if stored.destroyed or stored.wrapped is None:
            self.forget(pupil_id)
            return None
        return self._remember(pupil_id, self._unwrap(pupil_id, stored.wrapped))

    def ensure_key(self, pupil_id: UUID) -> bytes:
        """Return the pupil's data key, making one when the pupil has none yet.

        Raises `DataKeyDestroyedError` when the key was destroyed.
        """
        try:
            key = self.key_for(pupil_id)
        except DataKeyMissingError:
            key = self._create(pupil_id)
        if key is None:
            raise DataKeyDestroyedError(pupil_id)
        return key

    def new_key(self, pupil_id: UUID) -> bytes:
        """Make the data key of a newly registered pupil, without looking first.

        Should the pupil have a key already, that key is returned; raises
        `DataKeyDestroyedError` when it was destroyed.
        """
        key = self._create(pupil_id)
        if key is None:
            raise DataKeyDestroyedError(pupil_id)
        return key

    def load_keys(self, pupil_ids: Iterable[UUID]) -> None:
        """Bring the keys of `pupil_ids` that are not in the cache in, in one read.

        Decoding a batch of events then finds every key of their pupils here.
        """
        now = self._clock()
        with self._lock:
            wanted = {
                pupil_id
                for pupil_id in pupil_ids
                if pupil_id not in self._destroyed
                and (pupil_id not in self._cache or self._cache[pupil_id][1] <= now)
            }
        if not wanted:
            return
        for pupil_id, stored in self._read_many(wanted).items():
            if stored.destroyed or stored.wrapped is None:
                self.forget(pupil_id)
            else:
                self._remember(pupil_id, self._unwrap(pupil_id, stored.wrapped))

    def is_destroyed(self, pupil_id: UUID) -> bool:
        """Tell whether the pupil's key was destroyed, reading the store now."""
        return pupil_id in self.destroyed_among([pupil_id])

    def destroyed_among(self, pupil_ids: Iterable[UUID]) -> set[UUID]:
        """Return which of the pupils' keys were destroyed, in one store read.

        This process stops using the keys found destroyed; the cached keys of
        the others stay valid.
        """
        wanted = set(pupil_ids)
        with self._lock:
            known = wanted & self._destroyed
        destroyed = self._read_destroyed(wanted - known)
        for pupil_id in destroyed:
            self.forget(pupil_id)
        return known | destroyed

    def destroy(self, pupil_id: UUID, connection: Connection | None = None) -> bool:
        """Destroy the pupil's data key; return False when it was destroyed before.

        With `connection`, the key is erased in the caller's transaction, which
        must be on the records database. Call `scrub()` after it commits.
        """
        self.forget(pupil_id)
        destroyed = self._erase(pupil_id, connection)
        if destroyed:
            logger.info("destroyed the data key of pupil %s", pupil_id)
        return destroyed

    def forget(self, pupil_id: UUID) -> None:
        """Drop the pupil's key from this process for good."""
        with self._lock:
            self._destroyed.add(pupil_id)
            self._cache.pop(pupil_id, None)

    # Helpers

    def _create(self, pupil_id: UUID) -> bytes | None:
        key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
        if self._insert(pupil_id, self._wrap(pupil_id, key)):
            self._remember(pupil_id, key)
            return key
        # Another writer made the pupil's key first; use theirs.
        return self.key_for(pupil_id)

    def _remember(self, pupil_id: UUID, key: bytes) -> tuple[bytes, float, AESGCM]:
        entry = (key, self._clock() + KEY_CACHE_SECONDS, AESGCM(key))
        with self._lock:
            if pupil_id in self._destroyed:
                return entry
            self._cache[pupil_id] = entry
            self._cache.move_to_end(pupil_id)
            while len(self._cache) > KEY_CACHE_SIZE:
                self._cache.popitem(last=False)
        return entry

    def _wrap(self, pupil_id: UUID, key: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return nonce + self._wrapping.encrypt(nonce, key, _key_binding(pupil_id))

    def _unwrap(self, pupil_id: UUID, wrapped: bytes) -> bytes:
        nonce, ciphertext = wrapped[:NONCE_BYTES], wrapped[NONCE_BYTES:]
        try:
            return self._wrapping.decrypt(nonce, ciphertext, _key_binding(pupil_id))
        except InvalidTag:
            raise MasterKeyError(
                f"the data key of pupil {pupil_id} does not open with this master "
                f"key (fingerprint {self.fingerprint})"
            ) from None


def _key_binding(pupil_id: UUID) -> bytes:
    # Associated data: a wrapped key copied onto another pupil's row fails.
    return f"pupil-data-key/{pupil_id}".encode()


class MemoryKeyRing(KeyRing):
    """Data keys in process memory, for the `memory://` store."""

    def __init__(self, master: MasterKey) -> None:
        super().__init__(master)
        self._rows: dict[UUID, StoredKey] = {}
        self._rows_lock = threading.Lock()

    def _read(self, pupil_id: UUID) -> StoredKey | None:
        with self._rows_lock:
            return self._rows.get(pupil_id)

    def _read_many(self, pupil_ids: set[UUID]) -> dict[UUID, StoredKey]:
        with self._rows_lock:
            return {i: self._rows[i] for i in pupil_ids if i in self._rows}

    def _read_destroyed(self, pupil_ids: set[UUID]) -> set[UUID]:
        with self._rows_lock:
            return {
                pupil_id
                for pupil_id in pupil_ids
                if pupil_id in self._rows and self._rows[pupil_id].destroyed
            }

    def _insert(self, pupil_id: UUID, wrapped: bytes) -> bool:
        with self._rows_lock:
            if pupil_id in self._rows:
                return False
            self._rows[pupil_id] = StoredKey(wrapped=wrapped, destroyed=False)
            return True

    def _erase(self, pupil_id: UUID, connection: Connection | None) -> bool:
        with self._rows_lock:
            stored = self._rows.get(pupil_id)
            if stored is not None and stored.destroyed:
                return False
            self._rows[pupil_id] = StoredKey(wrapped=None, destroyed=True)
            return True

    def scrub(self) -> None:
        """Do nothing: process memory keeps no copies of erased rows."""

    def close(self) -> None:
        """Do nothing: the keys live as long as the process."""


class SqlKeyRing(KeyRing):
    """Data keys in the `pupil_data_keys` table of the records database."""

    def __init__(self, database_url: str, master: MasterKey) -> None:
        super().__init__(master)
        self.reader = create_sql_engine(database_url, pool_pre_ping=False)
        self.writer = create_sql_engine(database_url, writer=True)
        try:
            _create_tables(self.writer)
            self._check_fingerprint()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.reader.dispose()
        self.writer.dispose()

    def _check_fingerprint(self) -> None:
        stored = self._stored_fingerprint()
        if stored is None:
            try:
                with self.writer.begin() as connection:
                    connection.execute(
                        insert(key_ring_fingerprints).values(
                            name=MASTER_FINGERPRINT_NAME, fingerprint=self.fingerprint
                        )
                    )
                return
            except IntegrityError:
                # Another process started first with its key; compare with it.
                stored = self._stored_fingerprint()
        if stored != self.fingerprint:
            raise MasterKeyError(
                f"the master key (fingerprint {self.fingerprint}) is not the one "
                f"this records database was encrypted with (fingerprint {stored}); "
                "restore the right key from its backup"
            )

    def _stored_fingerprint(self) -> str | None:
        with self.reader.connect() as connection:
            return connection.execute(
                select(key_ring_fingerprints.c.fingerprint).where(
                    key_ring_fingerprints.c.name == MASTER_FINGERPRINT_NAME
                )
            ).scalar()

    def _read(self, pupil_id: UUID) -> StoredKey | None:
        rows = self._fetch(
            select(pupil_data_keys.c.wrapped_key, pupil_data_keys.c.destroyed_at).where(
                pupil_data_keys.c.pupil_id == str(pupil_id)
            )
        )
        if not rows:
            return None
        return StoredKey(
            wrapped=rows[0].wrapped_key, destroyed=rows[0].destroyed_at is not None
        )

    def _read_many(self, pupil_ids: set[UUID]) -> dict[UUID, StoredKey]:
        found: dict[UUID, StoredKey] = {}
        ordered = sorted(str(pupil_id) for pupil_id in pupil_ids)
        for start in range(0, len(ordered), KEYS_PER_READ):
            rows = self._fetch(
                select(
                    pupil_data_keys.c.pupil_id,
                    pupil_data_keys.c.wrapped_key,
                    pupil_data_keys.c.destroyed_at,
                ).where(
                    pupil_data_keys.c.pupil_id.in_(
                        ordered[start : start + KEYS_PER_READ]
                    )
                )
            )
            for row in rows:
                found[UUID(row.pupil_id)] = StoredKey(
                    wrapped=row.wrapped_key, destroyed=row.destroyed_at is not None
                )
        return found

    def _read_destroyed(self, pupil_ids: set[UUID]) -> set[UUID]:
        if not pupil_ids:
            return set()
        if len(pupil_ids) == 1:
            # Every command on a pupil runs this check, so its statement is built once.
            (pupil_id,) = pupil_ids
            found = self._fetch(DESTROYED_KEY_QUERY, {"pupil_id": str(pupil_id)})
            return {pupil_id} if found else set()
        rows = self._fetch(
            select(pupil_data_keys.c.pupil_id).where(
                pupil_data_keys.c.pupil_id.in_([str(i) for i in pupil_ids]),
                pupil_data_keys.c.destroyed_at.is_not(None),
            )
        )
        return {UUID(row.pupil_id) for row in rows}

    def _fetch(
        self, statement: Any, parameters: dict[str, Any] | None = None
    ) -> list[Any]:
        """Run a read, replacing once a pooled connection the server dropped.

        The reader does not ping a connection before use, because that costs
        every command a round trip. After a server restart the first read on
        a stale connection fails and the pool drops its old connections. The
        read then runs again on a new one.
        """
        for attempt in (1, 2):
            try:
                with self.reader.connect() as connection:
                    return list(connection.execute(statement, parameters or {}))
            except DBAPIError as error:
                if attempt == 2 or not error.connection_invalidated:
                    raise
        raise AssertionError("unreachable")

    def _insert(self, pupil_id: UUID, wrapped: bytes) -> bool:
        try:
            with self.writer.begin() as connection:
                connection.execute(
                    insert(pupil_data_keys).values(
                        pupil_id=str(pupil_id),
                        wrapped_key=wrapped,
                        created_at=iso_utc(utc_now()),
                    )
                )
        except IntegrityError:
            return False
        return True

    def _erase(self, pupil_id: UUID, connection: Connection | None) -> bool:
        if connection is not None:
            return _erase_row(connection, pupil_id)
        with self.writer.begin() as own:
            return _erase_row(own, pupil_id)

    def scrub(self) -> None:
        purge_free_space(self.writer, [pupil_data_keys.name], full=True)


def _erase_row(connection: Connection, pupil_id: UUID) -> bool:
    enable_secure_delete(connection)
    key = pupil_data_keys.c.pupil_id == str(pupil_id)
    row = connection.execute(
        select(pupil_data_keys.c.wrapped_key, pupil_data_keys.c.destroyed_at).where(
            key
        ),
        execution_options=LIVE_TABLES,
    ).first()
    now = iso_utc(utc_now())
    if row is None:
        # A destroyed row with no key still blocks making a key later.
        connection.execute(
            insert(pupil_data_keys).values(
                pupil_id=str(pupil_id), created_at=now, destroyed_at=now
            ),
            execution_options=LIVE_TABLES,
        )
        return True
    if row.destroyed_at is not None:
        return False
    if row.wrapped_key is not None:
        zeros = bytes(len(row.wrapped_key))
        connection.execute(
            update(pupil_data_keys).where(key).values(wrapped_key=zeros),
            execution_options=LIVE_TABLES,
        )
    connection.execute(
        update(pupil_data_keys).where(key).values(wrapped_key=None, destroyed_at=now),
        execution_options=LIVE_TABLES,
    )
    return True


def _create_tables(engine: Engine) -> None:
    # Several processes start at once; one may fail on a table another has
    # just created, and then finds it on the second try.
    try:
        key_metadata.create_all(engine)
    except SQLAlchemyError:
        key_metadata.create_all(engine)


def open_key_ring(database_url: str, master: MasterKey) -> KeyRing:
    """Open the key ring of the records store at `database_url`."""
    if is_memory(database_url):
        return MemoryKeyRing(master)
    return SqlKeyRing(database_url, master)


def enable_secure_delete(connection: Connection) -> None:
    """Make SQLite overwrite deleted content with zeros on this connection."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("PRAGMA secure_delete=ON")


def purge_free_space(engine: Engine, tables: Iterable[str], full: bool = False) -> None:
    """Clear old row versions that deletes and updates left in the database files.

    SQLite keeps old pages in its write-ahead log until a checkpoint, so the
    log is checkpointed and truncated. PostgreSQL keeps dead row versions
    until VACUUM (FULL rewrites the table into a new file). Failures are
    logged, because the rows themselves are already gone.
    """
    try:
        if engine.dialect.name == "sqlite":
            _checkpoint_sqlite(engine)
        elif engine.dialect.name == "postgresql":
            _vacuum_postgres(engine, tables, full)
    except SQLAlchemyError as error:
        logger.warning("could not clear free space after a destruction: %s", error)


def _checkpoint_sqlite(engine: Engine) -> None:
    # The driver connection runs the pragma outside any transaction, which a
    # checkpoint needs in order to complete.
    for _ in range(CHECKPOINT_ATTEMPTS):
        raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            busy, _log, _done = cursor.execute(
                "PRAGMA wal_checkpoint(TRUNCATE)"
            ).fetchone()
            cursor.close()
        finally:
            raw.close()
        if not busy:
            return
        time.sleep(CHECKPOINT_PAUSE_SECONDS)
    logger.warning(
        "the SQLite write-ahead log stayed in use; old pages remain in it until "
        "the next checkpoint"
    )


def _vacuum_postgres(engine: Engine, tables: Iterable[str], full: bool) -> None:
    preparer = engine.dialect.identifier_preparer
    command = "VACUUM (FULL)" if full else "VACUUM"
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as db:
        for table in tables:
            db.exec_driver_sql(f"{command} {preparer.quote(table)}")
