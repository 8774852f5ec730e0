"""The demo centre: a deterministic, realistic history loaded through the records API.

`build_plan` decides the centre's history as a list of API commands without any
I/O; `load` sends that plan to a running records service and prints a summary.
"""

from __future__ import annotations

from datetime import date

from services.demo.loader import DEFAULT_WORKERS, DemoLoadError, DemoSummary, PlanLoader
from services.demo.model import Command, Plan, Ref
from services.demo.plan import build_plan
from shared.clock import today_in
from shared.config import Settings

__all__ = [
    "Command",
    "DemoLoadError",
    "DemoSummary",
    "Plan",
    "Ref",
    "build_plan",
    "centre_today",
    "load",
]


def centre_today() -> date:
    """Return today's date in the centre's time zone (`PUPIL_RECORDS_TIMEZONE`)."""
    return today_in(Settings.from_env().timezone)


def load(
    records_url: str,
    tokens: dict[str, str],
    *,
    today: date | None = None,
    seed: int = 2023,
    progress: bool = True,
    scale: float = 1.0,
    workers: int = DEFAULT_WORKERS,
) -> DemoSummary:
    """Load the demo centre into the records service at `records_url`.

    `tokens` maps each role the plan uses (admin, registrar, methodist,
    specialist) to a bearer token. With `progress`, a progress bar is shown and
    the summary is printed at the end. Raises DemoLoadError naming the failed
    step and the service's problem body if any command is rejected.
    """
    plan = build_plan(today or centre_today(), seed=seed, scale=scale)
    summary = PlanLoader(records_url, tokens, workers=workers).run(
        plan, progress=progress
    )
    if progress:
        print(summary, flush=True)
    return summary
