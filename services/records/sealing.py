"""The records mapper: seals each pupil's personal data with that pupil's key.

Stored events keep a readable envelope (ids, topic, timestamp, position,
actor, order dates, grounds) so that the log, the feed and the audit work
without keys. The personal fields of an event (names, birth date, scores,
totals, levels, free text about the pupil) are taken out of its state and
stored as one AES-GCM blob under `sealed`, encrypted with the pupil's data
key. A session's attendance line is sealed the same way with the key of the
pupil it names. Once a pupil's key is destroyed, those fields decode as None.
"""

from __future__ import annotations

import base64
import binascii
import os
from typing import Any
from uuid import UUID

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from eventsourcing.domain import CanSnapshotAggregate
from eventsourcing.persistence import (
    Cipher,
    Compressor,
    Mapper,
    MapperDeserialisationError,
    StoredEvent,
    Transcoder,
)
from eventsourcing.utils import get_topic, resolve_topic

from services.records.domain.journals import Journal
from services.records.domain.pupils import Pupil
from services.records.keys import DataKeyMissingError, KeyRing

SEALED = "sealed"
FORMAT_VERSION = b"\x01"
NONCE_BYTES = 12

# The personal fields of every event of a pupil's stream. A new event class
# of that stream must be added here, or storing it fails.
PUPIL_SEALED_FIELDS: dict[str, tuple[str, ...]] = {
    Pupil.Registered.TOPIC: ("surname", "name", "patronymic", "birth_date"),
    Pupil.Enrolled.TOPIC: (),
    Pupil.EnrolmentCancelled.TOPIC: ("reason",),
    Pupil.Transferred.TOPIC: (),
    Pupil.Expelled.TOPIC: ("ground_detail",),
    Pupil.ExpulsionCancelled.TOPIC: ("reason",),
    Pupil.AttestationRecorded.TOPIC: ("scores", "total", "level"),
    Pupil.AttestationCorrected.TOPIC: ("scores", "total", "level", "reason"),
    Pupil.AttendanceBegan.TOPIC: (),
    # The act and reason of a destruction must outlive the key.
    Pupil.PersonalDataDestroyed.TOPIC: (),
}
# Events whose `attendance` lines each hold one pupil's status.
ATTENDANCE_TOPICS = frozenset({Journal.SessionRecorded.TOPIC})
ATTENDANCE_SEALED_FIELDS = ("status",)
UNSNAPSHOTTABLE_TOPICS = frozenset({Pupil.TOPIC, Journal.TOPIC})


class SealingError(TypeError):
    """An event cannot be stored without leaving personal data unsealed."""


class SealingMapper(Mapper[UUID]):
    """Maps records events to stored events, sealing personal fields per pupil."""

    def __init__(
        self,
        transcoder: Transcoder,
        key_ring: KeyRing,
        compressor: Compressor | None = None,
        cipher: Cipher | None = None,
    ) -> None:
        super().__init__(transcoder=transcoder, compressor=compressor, cipher=cipher)
        self.key_ring = key_ring

    def to_stored_event(self, domain_event: Any) -> StoredEvent:
        """Encode an event, sealing the personal fields of its pupil or pupils."""
        topic = get_topic(type(domain_event))
        state = dict(vars(domain_event))
        originator_id = state.pop("originator_id")
        originator_version = state.pop("originator_version")
        class_version = getattr(type(domain_event), "class_version", 1)
        if class_version > 1:
            state["class_version"] = class_version
        envelope = _Envelope(topic, originator_id, originator_version)
        self._seal_state(domain_event, envelope, state)
        stored_state = self.transcoder.encode(state)
        if self.compressor:
            stored_state = self.compressor.compress(stored_state)
        if self.cipher:
            stored_state = self.cipher.encrypt(stored_state)
        return StoredEvent(
            originator_id=originator_id,
            originator_version=originator_version,
            topic=topic,
            state=stored_state,
        )

    def to_domain_event(self, stored_event: StoredEvent) -> Any:
        """Decode a stored event; sealed fields of a destroyed key come back None."""
        cls = resolve_topic(stored_event.topic)
        envelope = _Envelope(
            stored_event.topic,
            stored_event.originator_id,
            stored_event.originator_version,
        )
        try:
            state = self._decode_state(stored_event.state)
            self._open_state(envelope, state)
        except Exception as error:
            raise MapperDeserialisationError(
                f"cannot decode the stored event {stored_event.topic} of "
                f"{stored_event.originator_id} at version "
                f"{stored_event.originator_version}: {error}"
            ) from error
        state["originator_id"] = _as_uuid(stored_event.originator_id)
        state["originator_version"] = stored_event.originator_version
        class_version = getattr(cls, "class_version", 1)
        version = state.pop("class_version", 1)
        while version < class_version:
            getattr(cls, f"upcast_v{version}_v{version + 1}")(state)
            version += 1
        domain_event = object.__new__(cls)
        object.__setattr__(domain_event, "__dict__", state)
        return domain_event

    # Sealing

    def _seal_state(
        self, domain_event: Any, envelope: _Envelope, state: dict[str, Any]
    ) -> None:
        if isinstance(domain_event, Pupil.Event):
            fields = PUPIL_SEALED_FIELDS.get(envelope.topic)
            if fields is None:
                raise SealingError(
                    f"{envelope.topic} has no entry in PUPIL_SEALED_FIELDS; list "
                    "its personal fields there before storing it"
                )
            if envelope.topic == Pupil.Registered.TOPIC:
                # A registration starts a new pupil, who has no key to look up.
                key = self.key_ring.new_key(envelope.originator_id)
                self._seal_fields(key, envelope, envelope.originator_id, state, fields)
            elif fields:
                key = self.key_ring.ensure_key(envelope.originator_id)
                self._seal_fields(key, envelope, envelope.originator_id, state, fields)
        elif envelope.topic in ATTENDANCE_TOPICS:
            state["attendance"] = [
                self._sealed_line(envelope, dict(line)) for line in state["attendance"]
            ]
        elif isinstance(domain_event, CanSnapshotAggregate):
            if getattr(domain_event, "topic", None) in UNSNAPSHOTTABLE_TOPICS:
                # NOTE: a snapshot contains the whole aggregate state, names and
                # attendance included, and no per-field sealing is defined
                # for it yet, so snapshots of these aggregates are refused.
                raise SealingError(
                    f"snapshots of {domain_event.topic} would store personal data "
                    "unsealed; they are not supported"
                )

    def _sealed_line(self, envelope: _Envelope, line: dict[str, Any]) -> dict[str, Any]:
        pupil_id = _as_uuid(line["pupil_id"])
        key = self.key_ring.ensure_key(pupil_id)
        self._seal_fields(key, envelope, pupil_id, line, ATTENDANCE_SEALED_FIELDS)
        return line

    def _seal_fields(
        self,
        key: bytes,
        envelope: _Envelope,
        pupil_id: UUID,
        state: dict[str, Any],
        fields: tuple[str, ...],
    ) -> None:
        values = {name: state.pop(name) for name in fields}
        plaintext = self.transcoder.encode(values)
        nonce = os.urandom(NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, plaintext, envelope.binding(pupil_id))
        blob = FORMAT_VERSION + nonce + sealed
        state[SEALED] = base64.b64encode(blob).decode("ascii")

    # Opening

    def _decode_state(self, stored_state: bytes) -> dict[str, Any]:
        if self.cipher:
            stored_state = self.cipher.decrypt(stored_state)
        if self.compressor:
            stored_state = self.compressor.decompress(stored_state)
        state: dict[str, Any] = self.transcoder.decode(stored_state)
        return state

    def _open_state(self, envelope: _Envelope, state: dict[str, Any]) -> None:
        fields = PUPIL_SEALED_FIELDS.get(envelope.topic)
        if fields and SEALED in state:
            pupil_id = _as_uuid(envelope.originator_id)
            self._open_fields(envelope, pupil_id, state, fields)
        elif envelope.topic in ATTENDANCE_TOPICS:
            for line in state["attendance"]:
                if SEALED in line:
                    pupil_id = _as_uuid(line["pupil_id"])
                    self._open_fields(
                        envelope, pupil_id, line, ATTENDANCE_SEALED_FIELDS
                    )

    def _open_fields(
        self,
        envelope: _Envelope,
        pupil_id: UUID,
        state: dict[str, Any],
        fields: tuple[str, ...],
    ) -> None:
        blob = _unbase64(state.pop(SEALED))
        try:
            cipher = self.key_ring.cipher_for(pupil_id)
        except DataKeyMissingError as error:
            raise ValueError(f"the sealed fields cannot be opened: {error}") from None
        if cipher is None:
            state.update(dict.fromkeys(fields))
            return
        if blob[:1] != FORMAT_VERSION:
            raise ValueError(f"unknown sealed format {blob[:1]!r}")
        nonce, sealed = blob[1 : 1 + NONCE_BYTES], blob[1 + NONCE_BYTES :]
        try:
            plaintext = cipher.decrypt(nonce, sealed, envelope.binding(pupil_id))
        except InvalidTag:
            raise ValueError(
                f"the sealed fields of pupil {pupil_id} fail authentication"
            ) from None
        values = self.transcoder.decode(plaintext)
        state.update({name: values.get(name) for name in fields})


class _Envelope:
    """The readable identity of a stored event that its sealed data are bound to."""

    def __init__(
        self, topic: str, originator_id: UUID | str, originator_version: int
    ) -> None:
        self.topic = topic
        self.originator_id = _as_uuid(originator_id)
        self.originator_version = originator_version
        self._tail = f"|{self.originator_id}|{originator_version}"

    def binding(self, pupil_id: UUID) -> bytes:
        """Return the associated data: a blob moved to another event fails to open."""
        return f"{self.topic}|pupil={pupil_id}{self._tail}".encode()


def _as_uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def _unbase64(text: Any) -> bytes:
    if not isinstance(text, str):
        raise ValueError("the sealed fields are not text")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("the sealed fields are not valid base64") from None
