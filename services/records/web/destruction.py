"""Destruction of a pupil's personal data, and the record that confirms it."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import marshmallow as ma
from flask.views import MethodView

from services.records.web.common import (
    Body,
    command_body,
    created,
    path_id,
    pupil_url,
    read_models,
    records,
)
from services.records.web.schemas import (
    DateString,
    IdString,
    ReadQueryArgsSchema,
    TimestampString,
)
from shared.auth import requires
from shared.fields import ActSchema, Text
from shared.jsonable import to_jsonable
from shared.problems import Problem, gone, not_found
from shared.web import Blueprint

DESTRUCTION_RECORD_READERS = ("archivist", "inspector")
RECORD_LOCATION_DOC = {
    "Location": {
        "description": "URL of the destruction record",
        "schema": {"type": "string"},
    }
}

blp = Blueprint(
    "destruction",
    __name__,
    url_prefix="/api/v1/pupils",
    description="Destruction of a pupil's personal data (crypto-shredding) and "
    "its record.",
)


class DestructionRequestSchema(ma.Schema):
    """The act under which a departed pupil's personal data are destroyed."""

    act = ma.fields.Nested(ActSchema, required=True)
    reason = Text(required=True)


class ActOutSchema(ma.Schema):
    """A destruction act: its number and date."""

    number = ma.fields.String()
    date = DateString()


class ActorOutSchema(ma.Schema):
    name = ma.fields.String()
    role = ma.fields.String()


class DestructionRecordSchema(ma.Schema):
    """What was destroyed, how, why, when, under which act and by whom."""

    id = IdString()
    pupil_id = IdString()
    subject = ma.fields.String(
        metadata={"description": "The data subject: the pupil's id"}
    )
    categories = ma.fields.List(
        ma.fields.String(), metadata={"description": "Categories of data destroyed"}
    )
    system = ma.fields.String()
    method = ma.fields.String()
    reason = ma.fields.String()
    destroyed_at = TimestampString()
    act = ma.fields.Nested(ActOutSchema)
    actor = ma.fields.Nested(ActorOutSchema)


class DestructionResultSchema(DestructionRecordSchema):
    """The destruction record a command created, with the log position."""

    position = ma.fields.Integer()


def destruction_record_url(pupil_id: Any) -> str:
    return f"{pupil_url(pupil_id)}/destruction-record"


def check_not_destroyed(pupil_id: UUID) -> None:
    """Raise 410 Gone, naming the act, when the pupil's personal data were destroyed."""
    record = records().destruction(pupil_id)
    if record is not None:
        raise destroyed_problem(record)


def destroyed_problem(record: dict[str, Any]) -> Problem:
    """Return the 410 problem for a pupil whose personal data were destroyed."""
    act = to_jsonable(record["act"])
    return gone(
        f"The personal data of pupil {record['subject']} were destroyed under act "
        f"{act['number']} of {act['date']}.",
        act=act,
        destroyed_at=to_jsonable(record["destroyed_at"]),
        destruction_record=destruction_record_url(record["subject"]),
    )


@blp.route("/<id:pupil_id>/personal-data-destruction", methods=["POST"])
@requires("archivist")
@blp.arguments(DestructionRequestSchema)
@blp.response(201, DestructionResultSchema, headers=RECORD_LOCATION_DOC)
def destroy_personal_data(body: Body, pupil_id: str) -> Any:
    """Destroy the personal data of a pupil who left the centre (crypto-shredding)."""
    pupil_uuid = path_id(pupil_id, "pupil")
    result = records().destroy_personal_data(pupil_uuid, **body)
    return created(command_body(result), destruction_record_url(pupil_uuid))


@blp.route("/<id:pupil_id>/destruction-record")
class DestructionRecord(MethodView):
    @requires(*DESTRUCTION_RECORD_READERS, personal_data=True)
    @blp.arguments(ReadQueryArgsSchema, location="query")
    @blp.response(200, DestructionRecordSchema)
    def get(self, query: Body, pupil_id: str) -> Body:
        """Return the record of the destruction of a pupil's personal data."""
        pupil_uuid = path_id(pupil_id, "pupil")
        # The record comes from the log; min_position still waits as promised.
        read_models(query["min_position"])
        record = records().destruction(pupil_uuid)
        if record is None:
            raise not_found(
                f"There is no pupil with id {pupil_uuid} whose personal data "
                "were destroyed."
            )
        return dict(to_jsonable(record))
