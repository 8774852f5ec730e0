"""The token file, the failed-authentication throttle and role declarations."""

from __future__ import annotations

import json
import multiprocessing
import stat
from pathlib import Path

import pytest

from shared.auth import (
    ROLES,
    STAFF,
    FailedAuthThrottle,
    TokenStore,
    TokenStoreError,
    UnknownRoleError,
    hash_token,
    requires,
)


@pytest.fixture
def store(tmp_path: Path) -> TokenStore:
    return TokenStore(tmp_path / "data" / "tokens.json")


def test_roles_and_staff():
    assert ROLES == (
        "registrar",
        "specialist",
        "methodist",
        "archivist",
        "inspector",
        "subscriber",
        "admin",
    )
    assert "subscriber" not in STAFF
    assert set(STAFF) | {"subscriber"} == set(ROLES)


def test_issue_stores_only_the_hash(store: TokenStore):
    token = store.issue("registrar", "Анна Смирнова")

    text = store.path.read_text(encoding="utf-8")
    (entry,) = json.loads(text)["tokens"]
    assert token not in text
    assert set(entry) == {"id", "hash", "role", "name", "issued_at"}
    assert entry["hash"] == hash_token(token)
    assert entry["name"] == "Анна Смирнова"
    assert entry["issued_at"].endswith("Z")


def test_token_file_mode_is_0600(store: TokenStore):
    store.issue("admin", "Администратор")

    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600


def test_authenticate_known_token(store: TokenStore):
    token = store.issue("methodist", "Мария Котова")

    principal = store.authenticate(token)

    assert principal is not None
    assert principal.role == "methodist"
    assert principal.name == "Мария Котова"
    assert principal.token_id == store.list()[0].id


@pytest.mark.parametrize("token", ["", "nope", "x" * 10_000, "\udcff"])
def test_authenticate_unknown_token(store: TokenStore, token: str):
    store.issue("admin", "Администратор")

    assert store.authenticate(token) is None


def test_authenticate_without_file(store: TokenStore):
    assert store.authenticate("anything") is None
    assert store.list() == []


def test_tokens_are_distinct(store: TokenStore):
    tokens = {store.issue("specialist", f"Специалист {n}") for n in range(20)}

    assert len(tokens) == 20
    assert len({info.id for info in store.list()}) == 20


def test_unknown_role_is_rejected(store: TokenStore):
    with pytest.raises(UnknownRoleError, match="superuser"):
        store.issue("superuser", "Кто-то")

    assert isinstance(UnknownRoleError("x"), ValueError)
    assert not store.path.exists()


@pytest.mark.parametrize("name", ["", "   ", "\t\n", "я" * 201])
def test_bad_holder_name_is_rejected(store: TokenStore, name: str):
    with pytest.raises(TokenStoreError):
        store.issue("admin", name)


def test_list_has_no_hashes(store: TokenStore):
    store.issue("archivist", "Архивист")

    (info,) = store.list()

    assert info.role == "archivist"
    assert info.name == "Архивист"
    assert not hasattr(info, "hash")


def test_revoke(store: TokenStore):
    kept_token = store.issue("admin", "Остаётся")
    revoked_token = store.issue("admin", "Уходит")
    revoked_id = next(info.id for info in store.list() if info.name == "Уходит")

    assert store.revoke(revoked_id) is True
    assert store.revoke(revoked_id) is False
    assert store.authenticate(revoked_token) is None
    assert store.authenticate(kept_token) is not None


def test_other_instance_sees_new_token_at_once(store: TokenStore):
    store.issue("admin", "Первый")
    reader = TokenStore(store.path)
    assert reader.authenticate("missing") is None

    token = TokenStore(store.path).issue("inspector", "Второй")

    assert reader.authenticate(token) is not None


def test_corrupt_file_raises(store: TokenStore):
    store.path.parent.mkdir(parents=True)
    store.path.write_text("{not json", encoding="utf-8")

    with pytest.raises(TokenStoreError, match="not a valid token file"):
        store.authenticate("anything")


def test_file_with_unknown_role_raises(store: TokenStore):
    store.issue("admin", "Администратор")
    document = json.loads(store.path.read_text(encoding="utf-8"))
    document["tokens"][0]["role"] = "root"
    store.path.write_text(json.dumps(document), encoding="utf-8")

    with pytest.raises(TokenStoreError):
        TokenStore(store.path).authenticate("anything")


def _issue_many(path: str, worker: int, count: int) -> list[str]:
    store = TokenStore(path)
    return [store.issue("specialist", f"Работник {worker}-{n}") for n in range(count)]


def test_concurrent_issuers_lose_nothing(store: TokenStore):
    context = multiprocessing.get_context("fork")
    with context.Pool(4) as pool:
        batches = pool.starmap(
            _issue_many, [(str(store.path), worker, 10) for worker in range(4)]
        )

    tokens = [token for batch in batches for token in batch]
    assert len(store.list()) == 40
    assert all(store.authenticate(token) is not None for token in tokens)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_throttle_allows_twenty_failures():
    throttle = FailedAuthThrottle(clock=FakeClock())

    waits = [throttle.record_failure("127.0.0.1") for _ in range(20)]

    assert waits == [None] * 20


def test_throttle_blocks_for_rest_of_window():
    clock = FakeClock()
    throttle = FailedAuthThrottle(clock=clock)
    for _ in range(20):
        throttle.record_failure("127.0.0.1")
    clock.now = 40.0

    assert throttle.record_failure("127.0.0.1") == pytest.approx(20.0)
    clock.now = 59.5
    assert throttle.record_failure("127.0.0.1") == pytest.approx(0.5)


def test_throttle_new_window_after_sixty_seconds():
    clock = FakeClock()
    throttle = FailedAuthThrottle(clock=clock)
    for _ in range(25):
        throttle.record_failure("127.0.0.1")
    clock.now = 60.0

    assert throttle.record_failure("127.0.0.1") is None


def test_throttle_is_per_address():
    throttle = FailedAuthThrottle(clock=FakeClock())
    for _ in range(21):
        throttle.record_failure("10.0.0.1")

    assert throttle.record_failure("10.0.0.2") is None


def test_throttle_forgets_expired_addresses():
    clock = FakeClock()
    throttle = FailedAuthThrottle(clock=clock, max_addresses=10)
    for number in range(10):
        throttle.record_failure(f"old-{number}")
    clock.now = 61.0

    throttle.record_failure("new-1")
    throttle.record_failure("new-2")

    assert len(throttle._windows) == 2


def test_requires_needs_known_roles():
    with pytest.raises(ValueError):
        requires()
    with pytest.raises(UnknownRoleError):
        requires("registrar", "teacher")


def test_requires_records_declaration():
    @requires("registrar", "inspector", personal_data=True)
    def view() -> str:
        return "ok"

    declared = view._access  # type: ignore[attr-defined]
    assert declared.roles == frozenset({"registrar", "inspector"})
    assert declared.personal_data is True
    assert view() == "ok"
