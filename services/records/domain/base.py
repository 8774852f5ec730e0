"""The aggregate base: every records event says who caused it."""

from __future__ import annotations

import copy
import dataclasses
from datetime import date, time
from decimal import Decimal
from typing import Any
from uuid import UUID

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

    def __deepcopy__(self, memo: dict[int, Any]) -> Any:
        # The repository copies every aggregate it hands out from its cache.
        # The generic deepcopy rebuilds each UUID and date through pickling
        # hooks. The state here keeps immutable values of a few types in
        # dicts, lists and dataclasses, so those containers are copied
        # directly and the values shared.
        duplicate = object.__new__(type(self))
        memo[id(self)] = duplicate
        duplicate.__dict__.update(_copied(self.__dict__, memo))
        return duplicate


# Values that never change once made, shared by a copy and its original
# (datetime is a subclass of date).
_IMMUTABLE = (str, int, float, bool, bytes, type(None), UUID, date, time, Decimal)


def _copied(value: Any, memo: dict[int, Any]) -> Any:
    """Return a deep copy of aggregate state, sharing immutable values."""
    if isinstance(value, _IMMUTABLE):
        return value
    if type(value) is dict:
        return {key: _copied(item, memo) for key, item in value.items()}
    if type(value) is list:
        return [_copied(item, memo) for item in value]
    if type(value) is tuple:
        return tuple(_copied(item, memo) for item in value)
    if type(value) is set:
        return {_copied(item, memo) for item in value}
    if _is_mutable_dataclass(value):
        duplicate = copy.copy(value)
        for item in dataclasses.fields(value):
            setattr(duplicate, item.name, _copied(getattr(value, item.name), memo))
        return duplicate
    return copy.deepcopy(value, memo)


def _is_mutable_dataclass(value: Any) -> bool:
    params = getattr(type(value), "__dataclass_params__", None)
    return params is not None and not params.frozen
