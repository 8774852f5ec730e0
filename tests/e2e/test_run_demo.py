"""`pupil-records run --demo`: the demo centre loaded once, over HTTP."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.e2e.helpers import (
    RunningServices,
    missing_modules,
    requires_services,
    wait_until,
)

MISSING_DEMO = missing_modules(("services.demo",))

pytestmark = [
    pytest.mark.e2e,
    requires_services,
    pytest.mark.skipif(bool(MISSING_DEMO), reason="the demo loader is not written yet"),
]


def demo_outcome(running: RunningServices) -> str | None:
    output = running.output()
    for outcome in ("loading the demo data", "demo data not loaded"):
        if outcome in output:
            return outcome
    return None


def test_demo_loaded_into_empty_store_only(
    start_services: Callable[..., RunningServices],
) -> None:
    first = start_services("--demo")
    first_outcome = wait_until(lambda: demo_outcome(first), 60, "the demo check")

    def some_pupils() -> list[object]:
        page = first.records.get_json("/api/v1/pupils", role="registrar", limit=1)
        items: list[object] = page["items"]
        return items

    # The whole demo centre takes minutes to load; its first pupils show that
    # the loader runs against these services with the local tokens.
    wait_until(some_pupils, 120, "the first demo pupils", 1.0)
    assert first.stop() == 0

    second = start_services("--demo", data_dir=first.data_dir)
    second_outcome = wait_until(lambda: demo_outcome(second), 60, "the demo check")

    assert first_outcome == "loading the demo data", first.output()[-3000:]
    assert second_outcome == "demo data not loaded"
    assert "records store is not empty" in second.output()
