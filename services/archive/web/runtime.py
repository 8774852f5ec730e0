"""The archive application, engine and schedule of one web process.

They are built on first use, inside a worker: gunicorn calls `create_app()` in
each worker after fork, and nothing here opens a database connection before a
request needs it.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass

from eventsourcing.persistence import PersistenceError
from sqlalchemy import Engine, inspect
from sqlalchemy.exc import SQLAlchemyError

from services.archive.application import ArchiveApplication
from services.archive.domain.schedule import RetentionSchedule, load_schedule
from services.archive.projection import follower_states
from services.archive.readmodels import (
    Base,
    covered_records_position,
    create_tables,
    records_head,
)
from shared.config import Settings
from shared.heartbeats import FollowerState, stall_reason
from shared.storage import create_sql_engine

logger = logging.getLogger(__name__)

EXTENSION_KEY = "pupil_records.archive_runtime"


@dataclass(frozen=True)
class Components:
    """The application and read-model engine that serve the archive API."""

    application: ArchiveApplication
    engine: Engine


@dataclass(frozen=True)
class FollowerStatus:
    """How far the archive has followed the records feed."""

    processed_position: int
    records_head: int

    @property
    def lag(self) -> int:
        """Records events the archive has seen announced but not processed."""
        return max(0, self.records_head - self.processed_position)


class ArchiveRuntime:
    """Builds the process's components on first use and hands them to views."""

    def __init__(
        self,
        settings: Settings,
        *,
        application: ArchiveApplication | None = None,
        engine: Engine | None = None,
        schedule: RetentionSchedule | None = None,
    ) -> None:
        self.settings = settings
        self.schedule = schedule or load_schedule()
        self._components: Components | None = None
        if application is not None and engine is not None:
            self._components = Components(application, engine)
            _ensure_tables(engine)
        self._build_lock = threading.Lock()

    @property
    def components(self) -> Components:
        """Return the components, building them on the first call."""
        components = self._components
        if components is None:
            with self._build_lock:
                if self._components is None:
                    self._components = _build(self.settings)
                components = self._components
        return components

    @property
    def application(self) -> ArchiveApplication:
        """The archive application of this process."""
        return self.components.application

    @property
    def engine(self) -> Engine:
        """The engine of the archive read models."""
        return self.components.engine

    def read_position(self) -> int:
        """Return the records position the read model is complete up to."""
        return covered_records_position(self.application, self.engine)

    def status(self) -> FollowerStatus:
        """Return the processed records position and the last records head seen."""
        return FollowerStatus(
            processed_position=self.application.processed_position(),
            records_head=records_head(self.engine),
        )

    def follower_states(self) -> list[FollowerState]:
        """Return the feed follower and the archive projector with their heartbeats."""
        return follower_states(self.application, self.engine)

    def readiness(self) -> str | None:
        """Return why the service is not ready, or None when it is."""
        try:
            status = self.status()
            follower, projector = self.follower_states()
        except (PersistenceError, SQLAlchemyError, OSError) as error:
            logger.warning("archive database unreachable: %s", error)
            return f"the archive database is unreachable ({type(error).__name__})"
        # NOTE: the lag is measured against the last head the follower saw, so
        # it stays at its last value while the follower cannot reach the feed.
        if status.lag > self.settings.follower_max_lag:
            return (
                f"the archive follower is {status.lag} events behind the records "
                f"head (allowed: {self.settings.follower_max_lag})"
            )
        stall_seconds = self.settings.follower_stall_seconds
        # Only the follower's own heartbeats tell the records head, so a
        # follower that stopped writing them counts as stalled too.
        return stall_reason(
            follower, stall_seconds, require_beats=True
        ) or stall_reason(projector, stall_seconds)

    def close(self) -> None:
        """Release the database connections, if they were opened."""
        with self._build_lock:
            components, self._components = self._components, None
        if components is not None:
            components.engine.dispose()
            components.application.close()


def _build(settings: Settings) -> Components:
    url = settings.archive_database_url
    application = ArchiveApplication.from_settings(settings)
    try:
        engine = create_sql_engine(url)
        _ensure_tables(engine)
    except BaseException:
        application.close()
        raise
    logger.info("archive web components ready")
    return Components(application, engine)


def _ensure_tables(engine: Engine) -> None:
    # The follower creates the tables too. When both start together, one of
    # them may fail on a table that the other has just created.
    try:
        create_tables(engine)
    except SQLAlchemyError:
        missing = set(Base.metadata.tables) - set(inspect(engine).get_table_names())
        if missing:
            raise
