"""The cap on requests of one web process that wait, and its settings."""

from __future__ import annotations

import logging
import threading

import pytest

from shared.config import ConfigurationError, Settings
from shared.wakeups import WaitingLimiter


def test_limiter_caps_each_client():
    limiter = WaitingLimiter(max_waiting=4, max_waiting_per_client=2)

    assert limiter.try_acquire("a")
    assert limiter.try_acquire("a")
    assert not limiter.try_acquire("a")
    assert limiter.try_acquire("b")
    assert limiter.waiting == 3


def test_limiter_caps_the_process():
    limiter = WaitingLimiter(max_waiting=2, max_waiting_per_client=2)

    assert limiter.try_acquire("a")
    assert limiter.try_acquire("b")
    assert not limiter.try_acquire("c")
    assert limiter.rejected == 1


def test_released_slot_is_granted_again():
    limiter = WaitingLimiter(max_waiting=1, max_waiting_per_client=1)
    assert limiter.try_acquire("a")

    limiter.release("a")

    assert limiter.waiting == 0
    assert limiter.try_acquire("b")


def test_slot_released_after_error():
    limiter = WaitingLimiter(max_waiting=1, max_waiting_per_client=1)

    with pytest.raises(RuntimeError, match="inside"):
        with limiter.slot("a") as granted:
            assert granted
            raise RuntimeError("inside")

    assert limiter.waiting == 0


def test_denied_slot_is_not_released():
    limiter = WaitingLimiter(max_waiting=1, max_waiting_per_client=1)
    assert limiter.try_acquire("a")

    with limiter.slot("b") as granted:
        assert not granted

    assert limiter.waiting == 1


def test_zero_cap_denies_every_wait():
    limiter = WaitingLimiter(max_waiting=0, max_waiting_per_client=1)

    assert not limiter.try_acquire("a")


def test_release_without_slot_raises():
    limiter = WaitingLimiter(max_waiting=1, max_waiting_per_client=1)

    with pytest.raises(RuntimeError, match="no waiting slot"):
        limiter.release("a")


def test_rejections_logged_once_per_interval(caplog):
    limiter = WaitingLimiter(max_waiting=0, max_waiting_per_client=1)

    with caplog.at_level(logging.WARNING, logger="shared.wakeups"):
        for _ in range(5):
            limiter.try_acquire("a")

    assert len(caplog.records) == 1
    assert limiter.rejected == 5


def test_concurrent_clients_never_exceed_caps():
    limiter = WaitingLimiter(max_waiting=3, max_waiting_per_client=2)
    peak = 0
    peak_lock = threading.Lock()
    start = threading.Barrier(8)

    def work(client: str) -> None:
        nonlocal peak
        start.wait()
        for _ in range(300):
            with limiter.slot(client) as granted:
                if granted:
                    with peak_lock:
                        peak = max(peak, limiter.waiting)

    threads = [threading.Thread(target=work, args=(f"c{i % 3}",)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert 1 <= peak <= 3
    assert limiter.waiting == 0


def test_settings_default_to_half_the_threads():
    settings = Settings.from_env({}, data_dir="/tmp/unused")

    assert settings.max_waiting_requests == 8
    assert settings.max_waiting_per_token == 8


def test_settings_follow_thread_count():
    settings = Settings.from_env({"PUPIL_RECORDS_THREADS": "6"}, data_dir="/tmp/x")

    assert settings.max_waiting_requests == 3


def test_settings_reject_cap_taking_every_thread():
    env = {"PUPIL_RECORDS_THREADS": "4", "PUPIL_RECORDS_MAX_WAITING_REQUESTS": "4"}

    with pytest.raises(ConfigurationError, match="must be less than"):
        Settings.from_env(env, data_dir="/tmp/unused")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("PUPIL_RECORDS_MAX_WAITING_REQUESTS", "-1"),
        ("PUPIL_RECORDS_MAX_WAITING_REQUESTS", "many"),
        ("PUPIL_RECORDS_MAX_WAITING_PER_TOKEN", "0"),
    ],
)
def test_settings_reject_invalid_caps(key, value):
    with pytest.raises(ConfigurationError, match=key):
        Settings.from_env({key: value}, data_dir="/tmp/unused")


def test_settings_pass_caps_to_children():
    env = {
        "PUPIL_RECORDS_MAX_WAITING_REQUESTS": "3",
        "PUPIL_RECORDS_MAX_WAITING_PER_TOKEN": "1",
    }
    settings = Settings.from_env(env, data_dir="/tmp/unused")

    child = Settings.from_env(settings.with_env())

    assert child.max_waiting_requests == 3
    assert child.max_waiting_per_token == 1
