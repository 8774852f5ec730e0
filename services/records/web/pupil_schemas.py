"""Request and response schemas of the pupils' endpoints."""

from __future__ import annotations

from typing import Any

import marshmallow as ma

from services.records.domain.dates import (
    EARLIEST_BIRTH_DATE,
    EARLIEST_DOCUMENT_DATE,
)
from services.records.domain.pupils import ATTESTATION_KINDS, GROUNDS
from services.records.web.common import PUPIL_CURSOR, sealed_cursor_field
from services.records.web.schemas import (
    AfterCursor,
    DateString,
    IdString,
    NotBefore,
    OrderOutSchema,
    PageQueryArgsSchema,
    ProtocolOutSchema,
    TimestampString,
    check_document_date,
)
from shared.fields import (
    Name,
    OrderSchema,
    PastOrToday,
    PersonName,
    ProtocolSchema,
    StrictDate,
    StrictInteger,
    Text,
    UUIDField,
    centre_today,
    limit_field,
    min_position_field,
)

PUPIL_STATUSES = ("registered", "enrolled", "left")
CRITERION_CODE_MAX_LENGTH = 100


def _scores_field(**kwargs: Any) -> ma.fields.Dict:
    return ma.fields.Dict(
        keys=Name(max_length=CRITERION_CODE_MAX_LENGTH),
        values=StrictInteger(),
        metadata={"description": "Points per criterion code of the programme"},
        **kwargs,
    )


def _effective_date_field() -> StrictDate:
    return StrictDate(required=True, validate=NotBefore(EARLIEST_DOCUMENT_DATE))


# Requests


class PupilRegistrationSchema(ma.Schema):
    """A pupil to register; `opened_on` defaults to today in the centre."""

    surname = PersonName(required=True)
    name = PersonName(required=True)
    patronymic = PersonName(load_default=None, allow_none=True)
    birth_date = StrictDate(
        required=True, validate=[PastOrToday(), NotBefore(EARLIEST_BIRTH_DATE)]
    )
    opened_on = StrictDate(
        load_default=None,
        validate=[PastOrToday(), NotBefore(EARLIEST_DOCUMENT_DATE)],
        metadata={"description": "Date the file was opened; default today"},
    )

    @ma.post_load
    def default_opened_on(self, data: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Open the file today unless the request gives an earlier date."""
        if data["opened_on"] is None:
            data["opened_on"] = centre_today()
        return data

    @ma.validates_schema
    def check_opened_after_birth(self, data: dict[str, Any], **kwargs: Any) -> None:
        """Reject a file opened before the pupil was born."""
        opened_on = data.get("opened_on")
        if opened_on is not None and opened_on < data["birth_date"]:
            raise ma.ValidationError(
                "Must not be earlier than birth_date.", field_name="opened_on"
            )


class EnrolmentRequestSchema(ma.Schema):
    """An enrolment order: programme, first day and the order."""

    programme_id = UUIDField(required=True)
    effective_date = _effective_date_field()
    order = ma.fields.Nested(OrderSchema, required=True)

    @ma.validates_schema
    def check_order_date(self, data: dict[str, Any], **kwargs: Any) -> None:
        """Reject an order dated before the centre's documents begin."""
        check_document_date(data, "order")


class CancellationRequestSchema(ma.Schema):
    """The order that voids an earlier one, and why."""

    reason = Text(required=True)
    order = ma.fields.Nested(OrderSchema, required=True)

    @ma.validates_schema
    def check_order_date(self, data: dict[str, Any], **kwargs: Any) -> None:
        """Reject an order dated before the centre's documents begin."""
        check_document_date(data, "order")


class TransferRequestSchema(ma.Schema):
    """A transfer inside the centre; `effective_date` is the first new day."""

    from_programme_id = UUIDField(required=True)
    to_programme_id = UUIDField(required=True)
    effective_date = _effective_date_field()
    order = ma.fields.Nested(OrderSchema, required=True)

    @ma.validates_schema
    def check_order_date(self, data: dict[str, Any], **kwargs: Any) -> None:
        """Reject an order dated before the centre's documents begin."""
        check_document_date(data, "order")

    @ma.validates_schema
    def check_two_programmes(self, data: dict[str, Any], **kwargs: Any) -> None:
        """Reject a transfer into the programme it leaves."""
        if data["from_programme_id"] == data["to_programme_id"]:
            raise ma.ValidationError(
                "Must differ from from_programme_id.", field_name="to_programme_id"
            )


class ExpulsionRequestSchema(ma.Schema):
    """An expulsion order; `effective_date` is the pupil's last day."""

    programme_id = UUIDField(required=True)
    effective_date = _effective_date_field()
    ground = ma.fields.String(required=True, validate=ma.validate.OneOf(GROUNDS))
    ground_detail = Text(load_default=None, allow_none=True)
    order = ma.fields.Nested(OrderSchema, required=True)

    @ma.validates_schema
    def check_order_date(self, data: dict[str, Any], **kwargs: Any) -> None:
        """Reject an order dated before the centre's documents begin."""
        check_document_date(data, "order")

    @ma.validates_schema
    def check_ground_detail(self, data: dict[str, Any], **kwargs: Any) -> None:
        """Require the ground in words when it is `other`."""
        if data["ground"] == "other" and data.get("ground_detail") is None:
            raise ma.ValidationError(
                "Required when ground is other.", field_name="ground_detail"
            )


class AttestationRequestSchema(ma.Schema):
    """An attestation result: scores per criterion and the protocol."""

    programme_id = UUIDField(required=True)
    kind = ma.fields.String(
        required=True, validate=ma.validate.OneOf(ATTESTATION_KINDS)
    )
    date = StrictDate(
        required=True, validate=[PastOrToday(), NotBefore(EARLIEST_DOCUMENT_DATE)]
    )
    scores = _scores_field(required=True)
    protocol = ma.fields.Nested(ProtocolSchema, required=True)

    @ma.validates_schema
    def check_protocol_date(self, data: dict[str, Any], **kwargs: Any) -> None:
        """Reject a protocol signed before the attestation it records."""
        if data["protocol"]["date"] < data["date"]:
            raise ma.ValidationError(
                {"protocol": {"date": ["Must not be earlier than date."]}}
            )


class CorrectionRequestSchema(ma.Schema):
    """New scores for an attestation, and why."""

    scores = _scores_field(required=True)
    reason = Text(required=True)


class PupilListQueryArgsSchema(PageQueryArgsSchema):
    """Query of the pupil list: filters and the page."""

    status = ma.fields.String(
        load_default=None, validate=ma.validate.OneOf(PUPIL_STATUSES)
    )
    programme_id = UUIDField(load_default=None)
    cursor = sealed_cursor_field(PUPIL_CURSOR)


class HistoryQueryArgsSchema(ma.Schema):
    """Query of a pupil's history: the page and `min_position`."""

    limit = limit_field()
    cursor = AfterCursor(after="position", load_default=None)
    min_position = min_position_field()


# Responses


class ExpulsionSchema(ma.Schema):
    """An expulsion of an enrolment."""

    id = IdString()
    effective_date = DateString(metadata={"description": "The pupil's last day"})
    ground = ma.fields.String()
    ground_detail = ma.fields.String(allow_none=True)
    order = ma.fields.Nested(OrderOutSchema)
    cancelled = ma.fields.Boolean()


class EnrolmentSchema(ma.Schema):
    """An enrolment in a programme and its expulsion, if any."""

    id = IdString()
    programme_id = IdString()
    effective_date = DateString(metadata={"description": "The first day"})
    order = ma.fields.Nested(OrderOutSchema)
    status = ma.fields.String(
        metadata={"enum": ["active", "expelled", "transferred", "cancelled"]}
    )
    expulsion = ma.fields.Nested(ExpulsionSchema, allow_none=True)


class AttestationSchema(ma.Schema):
    """An attestation result with its total and level."""

    id = IdString()
    programme_id = IdString()
    kind = ma.fields.String(metadata={"enum": list(ATTESTATION_KINDS)})
    date = DateString()
    scores = ma.fields.Dict(keys=ma.fields.String(), values=ma.fields.Integer())
    total = ma.fields.Integer()
    max_total = ma.fields.Integer()
    level = ma.fields.String(metadata={"enum": ["high", "medium", "low"]})
    protocol = ma.fields.Nested(ProtocolOutSchema)
    corrected = ma.fields.Boolean()


class AttendanceSummarySchema(ma.Schema):
    """The pupil's attendance in one journal; `absent` counts ill and excused."""

    journal_id = IdString()
    programme_id = IdString()
    sessions = ma.fields.Integer()
    present = ma.fields.Integer()
    absent = ma.fields.Integer()
    ill = ma.fields.Integer()
    excused = ma.fields.Integer()


class PupilSummarySchema(ma.Schema):
    """A personal file in a list."""

    id = IdString()
    surname = ma.fields.String()
    name = ma.fields.String()
    patronymic = ma.fields.String(allow_none=True)
    birth_date = DateString()
    status = ma.fields.String(metadata={"enum": list(PUPIL_STATUSES)})
    file_opened_on = DateString()
    file_closed_on = DateString(allow_none=True)


class PersonalFileSchema(PupilSummarySchema):
    """A pupil's personal file."""

    enrolments = ma.fields.List(ma.fields.Nested(EnrolmentSchema))
    attestations = ma.fields.List(ma.fields.Nested(AttestationSchema))
    attendance = ma.fields.List(ma.fields.Nested(AttendanceSummarySchema))
    version = ma.fields.Integer(
        metadata={"description": "Events in the pupil's stream"}
    )


class PupilPageSchema(ma.Schema):
    """A page of personal files, by normalised full name then id."""

    items = ma.fields.List(ma.fields.Nested(PupilSummarySchema))
    next_cursor = ma.fields.String(allow_none=True)


class PersonalFileResultSchema(PersonalFileSchema):
    """The personal file a registration opened, with the log position."""

    position = ma.fields.Integer()


class EnrolmentResultSchema(EnrolmentSchema):
    """The enrolment a command created or changed, with the log position."""

    pupil_id = IdString()
    position = ma.fields.Integer()


class ExpulsionResultSchema(ExpulsionSchema):
    """The expulsion a command created or changed, with the log position."""

    pupil_id = IdString()
    enrolment_id = IdString()
    programme_id = IdString()
    left_centre = ma.fields.Boolean()
    file_closed_on = DateString(allow_none=True)
    position = ma.fields.Integer()


class AttestationResultSchema(AttestationSchema):
    """The attestation a command recorded or corrected, with the log position."""

    pupil_id = IdString()
    position = ma.fields.Integer()


class ActorSchema(ma.Schema):
    name = ma.fields.String()
    role = ma.fields.String()


class HistoryEntrySchema(ma.Schema):
    """One event of the pupil's stream."""

    position = ma.fields.Integer()
    type = ma.fields.String()
    recorded_at = TimestampString()
    actor = ma.fields.Nested(ActorSchema)
    reason = ma.fields.String(allow_none=True)
    data = ma.fields.Dict()


class HistoryPageSchema(ma.Schema):
    """A page of a pupil's history, oldest first."""

    items = ma.fields.List(ma.fields.Nested(HistoryEntrySchema))
    next_cursor = ma.fields.String(allow_none=True)
