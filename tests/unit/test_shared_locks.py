"""Process locks that keep a rebuild from running beside the services."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from shared.locks import LockHeldError, ProcessLock


def test_second_exclusive_lock_raises_naming_holder(tmp_path: Path):
    path = tmp_path / "services.lock"
    with ProcessLock(path, owner="records web"):
        with pytest.raises(LockHeldError, match="records web") as caught:
            ProcessLock(path, owner="records rebuild").acquire()

    assert str(path) in str(caught.value)


def test_lock_free_again_after_release(tmp_path: Path):
    path = tmp_path / "services.lock"
    first = ProcessLock(path, owner="first").acquire()
    first.release()

    second = ProcessLock(path, owner="second").acquire()

    assert second.held
    assert not first.held
    second.release()


def test_shared_holders_coexist(tmp_path: Path):
    path = tmp_path / "services.lock"
    with (
        ProcessLock(path, owner="web", shared=True),
        ProcessLock(path, owner="projector", shared=True) as other,
    ):
        assert other.held


def test_exclusive_refused_while_shared_held(tmp_path: Path):
    path = tmp_path / "services.lock"
    with ProcessLock(path, owner="archive follower", shared=True):
        with pytest.raises(LockHeldError, match="archive follower"):
            ProcessLock(path, owner="rebuild").acquire()


def test_shared_refused_while_exclusive_held(tmp_path: Path):
    path = tmp_path / "services.lock"
    with ProcessLock(path, owner="archive rebuild"):
        with pytest.raises(LockHeldError, match="archive rebuild"):
            ProcessLock(path, owner="web", shared=True).acquire()


def test_acquire_twice_is_harmless(tmp_path: Path):
    lock = ProcessLock(tmp_path / "a.lock")

    assert lock.acquire() is lock.acquire()
    lock.release()
    lock.release()


HOLD_SCRIPT = """
import sys, time
from shared.locks import ProcessLock
lock = ProcessLock(sys.argv[1], owner="pupil-records run").acquire()
print("locked", flush=True)
time.sleep(60)
"""


def test_lock_of_other_process_then_released_when_it_dies(tmp_path: Path):
    path = tmp_path / "services.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_SCRIPT, str(path)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(
            LockHeldError, match=rf"pupil-records run \(pid {holder.pid}\)"
        ):
            ProcessLock(path, owner="rebuild").acquire()
    finally:
        holder.kill()
        holder.wait(timeout=10)

    deadline = time.monotonic() + 5
    while True:
        try:
            ProcessLock(path, owner="rebuild").acquire().release()
            break
        except LockHeldError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
