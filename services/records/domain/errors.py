"""Errors the records domain raises; the web layer maps them to HTTP."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID


class RecordsError(Exception):
    """Root of the records service's errors."""


class NotFoundError(RecordsError):
    """A resource named in the path does not exist."""

    def __init__(self, kind: str, resource_id: UUID | str) -> None:
        super().__init__(f"{kind} {resource_id} not found")
        self.kind = kind
        self.resource_id = str(resource_id)


class InvalidFieldError(RecordsError):
    """A body field fails a check that needs stored data (an unknown id, a score)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.errors: dict[str, list[str]] = {field: [message]}

    @classmethod
    def many(cls, errors: dict[str, list[str]]) -> InvalidFieldError:
        field, messages = next(iter(errors.items()))
        error = cls(field, messages[0])
        error.errors = errors
        return error


class RuleViolationError(RecordsError):
    """A domain rule forbids the command in the current state.

    `errors` maps field paths of the request, such as
    `attendance.2.pupil_id`, to messages when the rule concerns given fields.
    """

    def __init__(
        self, message: str, *, errors: dict[str, list[str]] | None = None
    ) -> None:
        super().__init__(message)
        self.errors = errors or {}


class NotEnrolledError(RuleViolationError):
    """A pupil listed at a session is not enrolled in the programme that day."""

    def __init__(self, pupil_id: UUID, day: date) -> None:
        super().__init__(
            f"pupil {pupil_id} is not enrolled in the journal's programme on "
            f"{day.isoformat()}"
        )
        self.pupil_id = pupil_id
        self.day = day


class DuplicatePupilError(RuleViolationError):
    """A pupil with the same normalised full name and birth date exists."""

    def __init__(self, existing_id: UUID) -> None:
        super().__init__(
            "a pupil with the same full name and birth date is already registered"
        )
        self.existing_id = existing_id


class PersonalDataDestroyedError(RuleViolationError):
    """The pupil's personal data were destroyed: their file takes no more records."""

    def __init__(self, pupil_id: UUID, act: dict[str, Any] | None = None) -> None:
        named = f" under act {act['number']} of {act['date']}" if act else ""
        super().__init__(
            f"the personal data of pupil {pupil_id} were destroyed{named}; "
            "nothing more can be recorded for this pupil"
        )
        self.pupil_id = pupil_id
        self.act = act


class DuplicateProgrammeError(RuleViolationError):
    """A programme with the same code exists."""


class ConcurrentChangeError(RecordsError):
    """Another request changed the same record first; the command may be retried."""
