"""Metrics of the records service that come from its database."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

from eventsourcing.persistence import PersistenceError
from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy.exc import SQLAlchemyError

logger = logging.getLogger(__name__)


class EventsAppendedCollector(Collector):
    """Exports the number of events in the records log at each scrape."""

    def __init__(self, count: Callable[[], int]) -> None:
        self._count = count

    def describe(self) -> Iterator[CounterMetricFamily]:
        yield self._family()

    def collect(self) -> Iterator[CounterMetricFamily]:
        family = self._family()
        try:
            family.add_metric([], self._count())
        except (SQLAlchemyError, PersistenceError, OSError) as error:
            logger.warning("events appended metric unavailable: %s", error)
            return
        yield family

    @staticmethod
    def _family() -> CounterMetricFamily:
        return CounterMetricFamily(
            "pupil_records_events_appended",
            "Events appended to the records log",
        )
