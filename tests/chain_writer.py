"""A process body that appends access records, for tests of concurrent appends.

It lives in a module of its own so that a spawned process imports only the
access log, not the web app and the test modules.
"""

from __future__ import annotations

from typing import Any

from services.records.accesslog import AccessLog, AccessRead
from shared.actor import Principal
from shared.storage import create_sql_engine

WRITER = Principal(token_id="t-writer", name="Зайцев Олег", role="inspector")


def append_records(url: str, worker: int, count: int, start: Any) -> None:
    """Wait for `start`, then append `count` records as process `worker`."""
    log = AccessLog(create_sql_engine(url), create_sql_engine(url, writer=True))
    start.wait()
    try:
        for number in range(count):
            log.append(
                AccessRead(
                    actor=WRITER,
                    endpoint="GET /api/v1/pupils",
                    pupil_ids=[],
                    purpose=f"процесс {worker}, чтение {number}",
                )
            )
    finally:
        log.reader.dispose()
        log.writer.dispose()
