"""Pupils' personal files: registration, orders, attestations, reads, history."""

from __future__ import annotations

from typing import Any

from flask.views import MethodView

from services.records.web.common import (
    LOCATION_HEADER_DOC,
    PUPIL_CURSOR,
    Body,
    after_of,
    command_body,
    created,
    page,
    page_key_of,
    path_id,
    pupil_url,
    read_models,
    records,
    sealed_page,
    unknown,
)
from services.records.web.destruction import check_not_destroyed
from services.records.web.pupil_schemas import (
    AttestationRequestSchema,
    AttestationResultSchema,
    CancellationRequestSchema,
    CorrectionRequestSchema,
    EnrolmentRequestSchema,
    EnrolmentResultSchema,
    ExpulsionRequestSchema,
    ExpulsionResultSchema,
    HistoryPageSchema,
    HistoryQueryArgsSchema,
    PersonalFileResultSchema,
    PersonalFileSchema,
    PupilListQueryArgsSchema,
    PupilPageSchema,
    PupilRegistrationSchema,
    TransferRequestSchema,
)
from services.records.web.schemas import ReadQueryArgsSchema
from shared.web import Blueprint

blp = Blueprint(
    "pupils",
    __name__,
    url_prefix="/api/v1/pupils",
    description="Pupils' personal files and the orders and results in them.",
)


@blp.route("")
class Pupils(MethodView):
    @blp.arguments(PupilRegistrationSchema)
    @blp.response(201, PersonalFileResultSchema, headers=LOCATION_HEADER_DOC)
    def post(self, body: Body) -> Any:
        """Register a pupil: open a personal file with status `registered`."""
        result = records().register_pupil(**body)
        answer = command_body(result, enrolments=[], attestations=[], attendance=[])
        return created(answer, pupil_url(answer["id"]))

    @blp.arguments(PupilListQueryArgsSchema, location="query")
    @blp.response(200, PupilPageSchema)
    def get(self, query: Body) -> Body:
        """List personal-file summaries by normalised full name, then id."""
        programme_id = query["programme_id"]
        items, last = read_models(query["min_position"]).pupils(
            limit=query["limit"],
            after=page_key_of(query["cursor"]),
            status=query["status"],
            programme_id=None if programme_id is None else str(programme_id),
        )
        return sealed_page(items, last, PUPIL_CURSOR)


@blp.route("/<id:pupil_id>")
class PupilById(MethodView):
    @blp.arguments(ReadQueryArgsSchema, location="query")
    @blp.response(200, PersonalFileSchema)
    def get(self, query: Body, pupil_id: str) -> Body:
        """Return a pupil's personal file; 410 once its personal data were destroyed."""
        pupil_uuid = path_id(pupil_id, "pupil")
        check_not_destroyed(pupil_uuid)
        document = read_models(query["min_position"]).personal_file(pupil_uuid)
        if document is None:
            raise unknown("pupil", pupil_uuid)
        return document


@blp.route("/<id:pupil_id>/history")
class PupilHistory(MethodView):
    @blp.arguments(HistoryQueryArgsSchema, location="query")
    @blp.response(200, HistoryPageSchema)
    def get(self, query: Body, pupil_id: str) -> Body:
        """List the events of the pupil's own stream, oldest first."""
        pupil_uuid = path_id(pupil_id, "pupil")
        models = read_models(query["min_position"])
        if not models.pupil_exists(pupil_uuid):
            raise unknown("pupil", pupil_uuid)
        items, next_after = models.history(
            pupil_uuid,
            limit=query["limit"],
            after_position=after_of(query["cursor"]) or 0,
        )
        return page(items, next_after)


@blp.route("/<id:pupil_id>/enrolments", methods=["POST"])
@blp.arguments(EnrolmentRequestSchema)
@blp.response(201, EnrolmentResultSchema, headers=LOCATION_HEADER_DOC)
def enrol(body: Body, pupil_id: str) -> Any:
    """Enrol the pupil in a programme; a closed file is reopened."""
    pupil_uuid = path_id(pupil_id, "pupil")
    result = records().enrol(pupil_uuid, **body)
    return created(command_body(result, pupil_id=pupil_uuid), pupil_url(pupil_uuid))


@blp.route("/<id:pupil_id>/enrolments/<id:enrolment_id>/cancellation", methods=["POST"])
@blp.arguments(CancellationRequestSchema)
@blp.response(200, EnrolmentResultSchema)
def cancel_enrolment(body: Body, pupil_id: str, enrolment_id: str) -> Body:
    """Void an enrolment made by mistake while nothing is recorded under it."""
    pupil_uuid = path_id(pupil_id, "pupil")
    enrolment_uuid = path_id(enrolment_id, "enrolment")
    result = records().cancel_enrolment(pupil_uuid, enrolment_uuid, **body)
    return command_body(result, pupil_id=pupil_uuid)


@blp.route("/<id:pupil_id>/transfers", methods=["POST"])
@blp.arguments(TransferRequestSchema)
@blp.response(201, EnrolmentResultSchema, headers=LOCATION_HEADER_DOC)
def transfer(body: Body, pupil_id: str) -> Any:
    """Move the pupil to another programme; return the new enrolment."""
    pupil_uuid = path_id(pupil_id, "pupil")
    result = records().transfer(pupil_uuid, **body)
    return created(command_body(result, pupil_id=pupil_uuid), pupil_url(pupil_uuid))


@blp.route("/<id:pupil_id>/expulsions", methods=["POST"])
@blp.arguments(ExpulsionRequestSchema)
@blp.response(201, ExpulsionResultSchema, headers=LOCATION_HEADER_DOC)
def expel(body: Body, pupil_id: str) -> Any:
    """Expel the pupil from a programme; the last one closes the file."""
    pupil_uuid = path_id(pupil_id, "pupil")
    result = records().expel(pupil_uuid, **body)
    return created(command_body(result), pupil_url(pupil_uuid))


@blp.route("/<id:pupil_id>/expulsions/<id:expulsion_id>/cancellation", methods=["POST"])
@blp.arguments(CancellationRequestSchema)
@blp.response(200, ExpulsionResultSchema)
def cancel_expulsion(body: Body, pupil_id: str, expulsion_id: str) -> Body:
    """Void an expulsion: the enrolment is active again."""
    pupil_uuid = path_id(pupil_id, "pupil")
    expulsion_uuid = path_id(expulsion_id, "expulsion")
    result = records().cancel_expulsion(pupil_uuid, expulsion_uuid, **body)
    return command_body(result)


@blp.route("/<id:pupil_id>/attestations", methods=["POST"])
@blp.arguments(AttestationRequestSchema)
@blp.response(201, AttestationResultSchema, headers=LOCATION_HEADER_DOC)
def record_attestation(body: Body, pupil_id: str) -> Any:
    """Record an attestation result; total and level come from the programme."""
    pupil_uuid = path_id(pupil_id, "pupil")
    on = body.pop("date")
    result = records().record_attestation(pupil_uuid, on=on, **body)
    return created(command_body(result, pupil_id=pupil_uuid), pupil_url(pupil_uuid))


@blp.route(
    "/<id:pupil_id>/attestations/<id:attestation_id>/corrections", methods=["POST"]
)
@blp.arguments(CorrectionRequestSchema)
@blp.response(200, AttestationResultSchema)
def correct_attestation(body: Body, pupil_id: str, attestation_id: str) -> Body:
    """Correct an attestation's scores; the original stays in the history."""
    pupil_uuid = path_id(pupil_id, "pupil")
    attestation_uuid = path_id(attestation_id, "attestation")
    result = records().correct_attestation(pupil_uuid, attestation_uuid, **body)
    return command_body(result, pupil_id=pupil_uuid)
