"""The access log: a tamper-evident record of each served read of personal data.

The web layer appends one access record per read, before it returns the data.
Records form a hash chain. `hash` is the SHA-256 of the canonical JSON of the
record's fields, `previous_hash` included, so changing, removing or reordering
a record breaks the link to the next one; `verify_chain` finds the first
broken link.

Appends are serialised across processes so that all of them extend one chain:
on SQLite by the database write lock (`BEGIN IMMEDIATE`), on PostgreSQL by a
transaction-level advisory lock. The code never updates or deletes a record,
and database triggers reject statements that try. Someone who can drop the
triggers can still edit the tables; the chain shows such an edit unless the
whole tail of the chain is cut off, which only a copy of the last hash kept
elsewhere can reveal.
"""

from __future__ import annotations

import hashlib
import json
import threading
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    Engine,
    Index,
    MetaData,
    String,
    Table,
    Text,
    and_,
    insert,
    or_,
    select,
    text,
)
from sqlalchemy.engine import Row

from shared.actor import Principal
from shared.clock import iso_utc, utc_now

metadata = MetaData()

access_log = Table(
    "access_log",
    metadata,
    # The position in the chain: 1, 2, 3, ... with no gaps.
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("id", String(36), nullable=False, unique=True),
    # ISO 8601 UTC with microseconds and `Z`: sorts as text in time order.
    Column("at", String(32), nullable=False),
    Column("actor_name", Text, nullable=False),
    Column("actor_role", String(32), nullable=False),
    Column("actor_token_id", String(64), nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("pupil_ids", Text, nullable=False),
    # NOTE: the purpose is free text in plain form. A name typed into it stays
    # here after that pupil's data key is destroyed.
    Column("purpose", Text, nullable=True),
    Column("previous_hash", String(64), nullable=True),
    Column("hash", String(64), nullable=False),
    Index("access_log_at_sequence", "at", "sequence"),
)

# The pupils of each record, so that a pupil's reads are found by an index.
access_log_pupils = Table(
    "access_log_pupils",
    metadata,
    Column("pupil_id", String(36), primary_key=True),
    Column("sequence", BigInteger, primary_key=True),
)

# Any fixed 64-bit number that no other code of this database uses for
# pg_advisory_xact_lock; the lock is released when the transaction ends.
ADVISORY_LOCK_KEY = 0x5075_7069_6C41_4C67
APPEND_ONLY_MESSAGE = "access records are append-only"

_SQLITE_TRIGGERS = tuple(
    f"CREATE TRIGGER IF NOT EXISTS {table}_no_{action} BEFORE {action.upper()} "
    f"ON {table} BEGIN SELECT RAISE(ABORT, '{APPEND_ONLY_MESSAGE}'); END"
    for table in ("access_log", "access_log_pupils")
    for action in ("update", "delete")
)
_POSTGRES_TRIGGERS = (
    "CREATE OR REPLACE FUNCTION access_log_reject_change() RETURNS trigger "
    f"LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION '{APPEND_ONLY_MESSAGE}'; END $$",
    *(
        f"CREATE OR REPLACE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE "
        f"ON {table} FOR EACH ROW EXECUTE FUNCTION access_log_reject_change()"
        for table in ("access_log", "access_log_pupils")
    ),
    *(
        f"CREATE OR REPLACE TRIGGER {table}_no_truncate BEFORE TRUNCATE "
        f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION access_log_reject_change()"
        for table in ("access_log", "access_log_pupils")
    ),
)


@dataclass(frozen=True)
class AccessRead:
    """A read of personal data to record: who, where, which pupils and why."""

    actor: Principal
    endpoint: str
    pupil_ids: Sequence[str]
    purpose: str | None


@dataclass(frozen=True)
class AccessRecord:
    """One link of the access log's chain."""

    sequence: int
    id: str
    at: str
    actor: Principal
    endpoint: str
    pupil_ids: tuple[str, ...]
    purpose: str | None
    previous_hash: str | None
    hash: str

    def hashed_fields(self) -> dict[str, Any]:
        """Return every field but `hash`: the content that `hash` covers."""
        return {
            "sequence": self.sequence,
            "id": self.id,
            "at": self.at,
            "actor": {
                "name": self.actor.name,
                "role": self.actor.role,
                "token_id": self.actor.token_id,
            },
            "endpoint": self.endpoint,
            "pupil_ids": list(self.pupil_ids),
            "purpose": self.purpose,
            "previous_hash": self.previous_hash,
        }

    def as_json(self) -> dict[str, Any]:
        """Return the record in the shape of the API response."""
        return {**self.hashed_fields(), "hash": self.hash}


def record_hash(fields: dict[str, Any]) -> str:
    """Return the hex SHA-256 of `fields` as canonical JSON.

    Canonical means sorted keys, no white space and non-ASCII characters
    escaped as `\\uXXXX`, so that the same fields always give the same bytes.
    """
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


PageKey = tuple[str, int]


class AccessLog:
    """Appends access records to the chain and reads them back.

    `writer` must take the write lock when a transaction begins on SQLite
    (`shared.storage.create_sql_engine(url, writer=True)`); `reader` serves
    the queries. They may be the same engine.
    """

    def __init__(
        self,
        reader: Engine,
        writer: Engine,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self._clock = clock
        self._postgres = writer.dialect.name == "postgresql"
        # Threads of one process wait here rather than on the database lock.
        self._append_lock = threading.Lock()

    def create_tables(self) -> None:
        """Create the tables and the triggers that reject changes, if missing."""
        with self.writer.begin() as connection:
            self._lock_chain(connection)
            metadata.create_all(connection)
            triggers = _POSTGRES_TRIGGERS if self._postgres else _SQLITE_TRIGGERS
            for statement in triggers:
                connection.execute(text(statement))

    def append(self, read: AccessRead) -> AccessRecord:
        """Append a record of `read` to the chain and return it."""
        with self._append_lock, self.writer.begin() as connection:
            self._lock_chain(connection)
            head = connection.execute(
                select(access_log.c.sequence, access_log.c.at, access_log.c.hash)
                .order_by(access_log.c.sequence.desc())
                .limit(1)
            ).first()
            record = self._next_record(read, head)
            connection.execute(insert(access_log).values(**_row_values(record)))
            if record.pupil_ids:
                connection.execute(
                    insert(access_log_pupils),
                    [
                        {"pupil_id": pupil_id, "sequence": record.sequence}
                        for pupil_id in record.pupil_ids
                    ],
                )
        return record

    def _lock_chain(self, connection: Connection) -> None:
        if self._postgres:
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": ADVISORY_LOCK_KEY}
            )

    def _next_record(self, read: AccessRead, head: Row[Any] | None) -> AccessRecord:
        at = iso_utc(self._clock())
        if head is not None and at < head.at:
            # The chain is also the time order of the list: a clock that was
            # set back must not put a record before its predecessor.
            at = head.at
        unsigned = AccessRecord(
            sequence=1 if head is None else head.sequence + 1,
            id=str(uuid.uuid4()),
            at=at,
            actor=read.actor,
            endpoint=read.endpoint,
            pupil_ids=tuple(dict.fromkeys(read.pupil_ids)),
            purpose=read.purpose,
            previous_hash=None if head is None else head.hash,
            hash="",
        )
        return replace(unsigned, hash=record_hash(unsigned.hashed_fields()))

    def page(
        self,
        *,
        limit: int,
        pupil_id: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        after: PageKey | None = None,
    ) -> tuple[list[AccessRecord], PageKey | None]:
        """Return records by time, then sequence, and the key of the next page.

        `start` is inclusive and `end` exclusive; `after` is the key that the
        previous page returned.
        """
        query = select(access_log)
        if pupil_id is not None:
            reads_of_pupil = select(access_log_pupils.c.sequence).where(
                access_log_pupils.c.pupil_id == pupil_id.lower()
            )
            query = query.where(access_log.c.sequence.in_(reads_of_pupil))
        if start is not None:
            query = query.where(access_log.c.at >= iso_utc(start))
        if end is not None:
            query = query.where(access_log.c.at < iso_utc(end))
        if after is not None:
            at, sequence = after
            query = query.where(
                or_(
                    access_log.c.at > at,
                    and_(access_log.c.at == at, access_log.c.sequence > sequence),
                )
            )
        query = query.order_by(access_log.c.at, access_log.c.sequence).limit(limit + 1)
        with self.reader.connect() as connection:
            rows = connection.execute(query).all()
        records = [_record(row) for row in rows[:limit]]
        more = len(rows) > limit
        next_key = (records[-1].at, records[-1].sequence) if more else None
        return records, next_key

    def chain(self, batch_size: int = 1000) -> Iterator[list[AccessRecord]]:
        """Yield the records in chain order, in batches."""
        last = 0
        while True:
            with self.reader.connect() as connection:
                rows = connection.execute(
                    select(access_log)
                    .where(access_log.c.sequence > last)
                    .order_by(access_log.c.sequence)
                    .limit(batch_size)
                ).all()
            if not rows:
                return
            batch = [_record(row) for row in rows]
            yield batch
            last = batch[-1].sequence

    def indexed_pupils(self, first: int, last: int) -> dict[int, set[str]]:
        """Return the pupil index rows of the records `first` to `last`."""
        with self.reader.connect() as connection:
            rows = connection.execute(
                select(access_log_pupils).where(
                    access_log_pupils.c.sequence.between(first, last)
                )
            ).all()
        index: dict[int, set[str]] = {}
        for row in rows:
            index.setdefault(row.sequence, set()).add(row.pupil_id)
        return index


def _row_values(record: AccessRecord) -> dict[str, Any]:
    return {
        "sequence": record.sequence,
        "id": record.id,
        "at": record.at,
        "actor_name": record.actor.name,
        "actor_role": record.actor.role,
        "actor_token_id": record.actor.token_id,
        "endpoint": record.endpoint,
        "pupil_ids": json.dumps(list(record.pupil_ids)),
        "purpose": record.purpose,
        "previous_hash": record.previous_hash,
        "hash": record.hash,
    }


def _record(row: Row[Any]) -> AccessRecord:
    return AccessRecord(
        sequence=row.sequence,
        id=row.id,
        at=row.at,
        actor=Principal(
            token_id=row.actor_token_id, name=row.actor_name, role=row.actor_role
        ),
        endpoint=row.endpoint,
        pupil_ids=tuple(_pupil_ids(row.pupil_ids)),
        purpose=row.purpose,
        previous_hash=row.previous_hash,
        hash=row.hash,
    )


def _pupil_ids(stored: str) -> list[str]:
    try:
        value = json.loads(stored)
    except ValueError:
        # An edited row is returned as it is, and `verify_chain` reports it.
        return [stored]
    if not isinstance(value, list):
        return [stored]
    return [str(item) for item in value]


# Verification


@dataclass(frozen=True)
class ChainReport:
    """The outcome of `verify_chain`: records checked and the first broken link.

    `last_sequence` and `last_hash` are those of the last intact record, and
    `contains_expected` is whether a record with the expected hash was
    among the intact ones.
    """

    checked: int
    broken_at: int | None = None
    reason: str | None = None
    last_sequence: int | None = None
    last_hash: str | None = None
    contains_expected: bool = False

    @property
    def intact(self) -> bool:
        """Whether every link of the chain holds."""
        return self.broken_at is None


def verify_chain(
    log: AccessLog, batch_size: int = 1000, *, expected_hash: str | None = None
) -> ChainReport:
    """Walk the whole chain and report the first record whose link is broken.

    A chain cut after its newest records still links, so only a hash kept
    elsewhere (`expected_hash`) shows that a record it names is gone.
    """
    checked = 0
    contains_expected = False
    previous: AccessRecord | None = None
    for batch in log.chain(batch_size):
        index = log.indexed_pupils(batch[0].sequence, batch[-1].sequence)
        for record in batch:
            reason = _broken_link(record, previous, index.get(record.sequence, set()))
            if reason is not None:
                return _report(checked, previous, contains_expected, record, reason)
            checked += 1
            contains_expected = contains_expected or record.hash == expected_hash
            previous = record
    return _report(checked, previous, contains_expected)


def _report(
    checked: int,
    last: AccessRecord | None,
    contains_expected: bool,
    broken: AccessRecord | None = None,
    reason: str | None = None,
) -> ChainReport:
    return ChainReport(
        checked=checked,
        broken_at=broken.sequence if broken is not None else None,
        reason=reason,
        last_sequence=last.sequence if last is not None else None,
        last_hash=last.hash if last is not None else None,
        contains_expected=contains_expected,
    )


def _broken_link(
    record: AccessRecord, previous: AccessRecord | None, indexed: set[str]
) -> str | None:
    expected_sequence = 1 if previous is None else previous.sequence + 1
    if record.sequence != expected_sequence:
        return (
            f"record {record.sequence} follows record {expected_sequence - 1}: "
            f"record {expected_sequence} is missing"
        )
    expected_previous = None if previous is None else previous.hash
    if record.previous_hash != expected_previous:
        return f"record {record.sequence} does not link to the hash of its predecessor"
    if record_hash(record.hashed_fields()) != record.hash:
        return f"record {record.sequence} does not match its hash"
    if indexed != set(record.pupil_ids):
        return f"the pupil index of record {record.sequence} differs from the record"
    return None
