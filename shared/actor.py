"""The principal on whose behalf the current code runs.

The web layer sets it for each authenticated request; scripts and tests set it
with `acting_as`. Domain code reads it with `get_principal()` and never
imports Flask.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar, Token
from dataclasses import dataclass


class NoPrincipalError(RuntimeError):
    """Code that records an actor ran with no principal set."""


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: the token's id, the holder's name and role."""

    token_id: str
    name: str
    role: str


current_principal: ContextVar[Principal | None] = ContextVar(
    "current_principal", default=None
)


def set_principal(principal: Principal) -> Token[Principal | None]:
    """Make `principal` the current actor; pass the result to `reset_principal`."""
    return current_principal.set(principal)


def reset_principal(token: Token[Principal | None]) -> None:
    """Restore the actor that was current before the matching `set_principal`."""
    current_principal.reset(token)


def get_principal() -> Principal:
    """Return the current actor or raise `NoPrincipalError` if none is set."""
    principal = current_principal.get()
    if principal is None:
        raise NoPrincipalError(
            "no principal is set: authenticate the request, or wrap the call "
            "in shared.actor.acting_as(Principal(...))"
        )
    return principal


def find_principal() -> Principal | None:
    """Return the current actor, or None when none is set."""
    return current_principal.get()


@contextmanager
def acting_as(principal: Principal) -> Iterator[Principal]:
    """Run the enclosed block with `principal` as the current actor."""
    token = set_principal(principal)
    try:
        yield principal
    finally:
        reset_principal(token)
