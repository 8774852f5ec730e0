"""Transcodings both services register on their eventsourcing transcoders."""

from __future__ import annotations

from datetime import date

from eventsourcing.persistence import JSONTranscoder, Transcoding


class DateAsISO(Transcoding):
    """A civil date stored as `YYYY-MM-DD`."""

    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


def register_civil_dates(transcoder: JSONTranscoder) -> None:
    """Register the transcodings for civil dates on `transcoder`."""
    transcoder.register(DateAsISO())
