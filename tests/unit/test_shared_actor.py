"""The current principal: a context variable that domain code reads."""

from __future__ import annotations

import contextvars

import pytest

from shared.actor import (
    NoPrincipalError,
    Principal,
    acting_as,
    find_principal,
    get_principal,
    reset_principal,
    set_principal,
)

REGISTRAR = Principal(token_id="t1", name="Анна Смирнова", role="registrar")
ADMIN = Principal(token_id="t2", name="Пётр Орлов", role="admin")


def test_get_principal_without_one_raises():
    with pytest.raises(NoPrincipalError, match="acting_as"):
        get_principal()


def test_find_principal_without_one_is_none():
    assert find_principal() is None


def test_acting_as_sets_and_restores():
    with acting_as(REGISTRAR) as principal:
        assert principal is REGISTRAR
        assert get_principal() == REGISTRAR

    assert find_principal() is None


def test_acting_as_nests():
    with acting_as(REGISTRAR):
        with acting_as(ADMIN):
            assert get_principal() == ADMIN
        assert get_principal() == REGISTRAR


def test_acting_as_restores_after_error():
    with pytest.raises(ValueError), acting_as(ADMIN):
        raise ValueError("fails inside")

    assert find_principal() is None


def test_set_and_reset():
    token = set_principal(ADMIN)
    try:
        assert get_principal() is ADMIN
    finally:
        reset_principal(token)

    assert find_principal() is None


def test_principal_is_frozen():
    with pytest.raises(AttributeError):
        REGISTRAR.role = "admin"  # type: ignore[misc]


def test_principal_isolated_per_context():
    def inside() -> Principal | None:
        set_principal(ADMIN)
        return find_principal()

    assert contextvars.copy_context().run(inside) == ADMIN
    assert find_principal() is None
