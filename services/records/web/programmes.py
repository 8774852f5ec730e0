"""Programmes: `POST/GET /api/v1/programmes`, `GET /api/v1/programmes/{id}`."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import marshmallow as ma
from flask.views import MethodView

from services.records.web.common import (
    LOCATION_HEADER_DOC,
    Body,
    command_body,
    created,
    page_key_of,
    path_id,
    programme_url,
    read_models,
    records,
    sealed_cursor_field,
    sealed_page,
    unknown,
)
from services.records.web.schemas import (
    IdString,
    OrderOutSchema,
    PageQueryArgsSchema,
    ReadQueryArgsSchema,
)
from shared.fields import Name, OrderSchema, StrictInteger
from shared.web import Blueprint

CODE_MAX_LENGTH = 100
TITLE_MAX_LENGTH = 500
# Points of one criterion; far above any scale in use, and exact in every JSON
# client, whose numbers are doubles.
MAX_SCORE = 1000

blp = Blueprint(
    "programmes",
    __name__,
    url_prefix="/api/v1/programmes",
    description="Programmes with their attestation criteria and level thresholds.",
)


class Share(ma.fields.Field[Decimal]):
    """A share of the maximum total: a JSON number from 0 to 1, kept exact."""

    default_error_messages = {"invalid": "Not a valid number."}

    def _deserialize(self, value: Any, attr: Any, data: Any, **kwargs: Any) -> Decimal:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.make_error("invalid")
        # The text of the number, not its binary value: 0.56 stays 0.56.
        return Decimal(str(value))

    def _serialize(self, value: Any, attr: Any, obj: Any, **kwargs: Any) -> Any:
        return None if value is None else float(value)


class CriterionSchema(ma.Schema):
    """An attestation criterion and the points it can give."""

    code = Name(required=True, max_length=CODE_MAX_LENGTH)
    title = Name(required=True, max_length=TITLE_MAX_LENGTH)
    max_score = StrictInteger(
        required=True, validate=ma.validate.Range(min=1, max=MAX_SCORE)
    )


class LevelsSchema(ma.Schema):
    """Level thresholds as shares of the maximum total: 0 ≤ medium < high ≤ 1."""

    high = Share(required=True, validate=ma.validate.Range(min=0, max=1))
    medium = Share(required=True, validate=ma.validate.Range(min=0, max=1))

    @ma.validates_schema
    def check_order(self, data: dict[str, Any], **kwargs: Any) -> None:
        """Reject a medium threshold that is not below the high one."""
        if data["medium"] >= data["high"]:
            raise ma.ValidationError("Must be lower than high.", field_name="medium")


class ProgrammeRequestSchema(ma.Schema):
    """A programme to enter."""

    code = Name(required=True, max_length=CODE_MAX_LENGTH)
    title = Name(required=True, max_length=TITLE_MAX_LENGTH)
    orientation = Name(required=True, max_length=TITLE_MAX_LENGTH)
    approved_order = ma.fields.Nested(OrderSchema, required=True)
    criteria = ma.fields.List(
        ma.fields.Nested(CriterionSchema),
        required=True,
        validate=ma.validate.Length(min=1, max=100),
    )
    levels = ma.fields.Nested(LevelsSchema, required=True)

    @ma.validates_schema
    def check_unique_codes(self, data: dict[str, Any], **kwargs: Any) -> None:
        """Reject a criterion code given twice."""
        seen: set[str] = set()
        for index, criterion in enumerate(data["criteria"]):
            if criterion["code"] in seen:
                raise ma.ValidationError(
                    {"criteria": {index: {"code": ["Criterion codes must be unique."]}}}
                )
            seen.add(criterion["code"])


class CriterionOutSchema(ma.Schema):
    code = ma.fields.String()
    title = ma.fields.String()
    max_score = ma.fields.Integer()


class LevelsOutSchema(ma.Schema):
    high = ma.fields.Float()
    medium = ma.fields.Float()


class ProgrammeSchema(ma.Schema):
    """A programme as stored."""

    id = IdString()
    code = ma.fields.String()
    title = ma.fields.String()
    orientation = ma.fields.String()
    approved_order = ma.fields.Nested(OrderOutSchema)
    criteria = ma.fields.List(ma.fields.Nested(CriterionOutSchema))
    levels = ma.fields.Nested(LevelsOutSchema)
    max_total = ma.fields.Integer(metadata={"description": "Sum of max_score"})


class ProgrammeResultSchema(ProgrammeSchema):
    """The programme a command created, with the log position it reached."""

    position = ma.fields.Integer()


class ProgrammePageSchema(ma.Schema):
    """A page of programmes, ordered by code."""

    items = ma.fields.List(ma.fields.Nested(ProgrammeSchema))
    next_cursor = ma.fields.String(allow_none=True)


PROGRAMME_CURSOR = "programmes"


class ProgrammeListQueryArgsSchema(PageQueryArgsSchema):
    """Query of the programme list."""

    cursor = sealed_cursor_field(PROGRAMME_CURSOR)


@blp.route("")
class Programmes(MethodView):
    @blp.arguments(ProgrammeRequestSchema)
    @blp.response(201, ProgrammeResultSchema, headers=LOCATION_HEADER_DOC)
    def post(self, body: Body) -> Any:
        """Enter a programme (its code must be new)."""
        levels = body.pop("levels")
        result = records().create_programme(
            high=levels["high"], medium=levels["medium"], **body
        )
        return created(command_body(result), programme_url(result.resource["id"]))

    @blp.arguments(ProgrammeListQueryArgsSchema, location="query")
    @blp.response(200, ProgrammePageSchema)
    def get(self, query: Body) -> Body:
        """List programmes by code."""
        models = read_models(query["min_position"])
        items, last = models.programmes(
            limit=query["limit"], after=page_key_of(query["cursor"])
        )
        return sealed_page(items, last, PROGRAMME_CURSOR)


@blp.route("/<id:programme_id>")
class ProgrammeById(MethodView):
    @blp.arguments(ReadQueryArgsSchema, location="query")
    @blp.response(200, ProgrammeSchema)
    def get(self, query: Body, programme_id: str) -> Body:
        """Return one programme."""
        programme_uuid = path_id(programme_id, "programme")
        document = read_models(query["min_position"]).programme(programme_uuid)
        if document is None:
            raise unknown("programme", programme_uuid)
        return document
