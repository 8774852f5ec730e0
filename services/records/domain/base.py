"""The aggregate base: every records event says who caused it."""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate

from shared.actor import get_principal


def current_actor() -> dict[str, str]:
    """Return the acting principal as stored in events: name, role, token id."""
    principal = get_principal()
    return {
        "name": principal.name,
        "role": principal.role,
        "token_id": principal.token_id,
    }


class RecordsAggregate(Aggregate):
    """An aggregate whose events carry the `actor` taken from the request."""

    class Event(Aggregate.Event):
        actor: dict[str, str]

    @classmethod
    def _create(cls, event_class: Any, *, id: Any = None, **kwargs: Any) -> Any:  # noqa: A002
        kwargs.setdefault("actor", current_actor())
        return super()._create(event_class, id=id, **kwargs)

    def trigger_event(self, event_class: Any, **kwargs: Any) -> None:
        kwargs.setdefault("actor", current_actor())
        super().trigger_event(event_class, **kwargs)
