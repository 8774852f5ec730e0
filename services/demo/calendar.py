"""The demo centre's calendar: academic years, working days and holidays."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

FIRST_ACADEMIC_YEAR = 2023

# Non-working days fixed by the Labour Code (art. 112), plus 31 December, when the
# centre has no sessions either. Weekends are excluded separately.
_HOLIDAYS = (
    (1, 1), (1, 2), (1, 3), (1, 4), (1, 5), (1, 6), (1, 7), (1, 8),
    (2, 23), (3, 8), (5, 1), (5, 9), (6, 12), (11, 4), (12, 31),
)  # fmt: skip


@dataclass(frozen=True, order=True)
class AcademicYear:
    """One academic year of the centre: sessions run from 1 September to 31 May."""

    start_year: int

    @property
    def start(self) -> date:
        return date(self.start_year, 9, 1)

    @property
    def end(self) -> date:
        return date(self.start_year + 1, 5, 31)

    def working_days(self, until: date | None = None) -> list[date]:
        """List the year's working days, up to and including `until` if given."""
        last = self.end if until is None else min(self.end, until)
        return working_days_between(self.start, last)


def is_working_day(day: date) -> bool:
    """Tell whether the centre works on `day` (a weekday that is not a holiday)."""
    return day.weekday() < 5 and (day.month, day.day) not in _HOLIDAYS


def working_days_between(first: date, last: date) -> list[date]:
    """List the working days from `first` to `last`, both included."""
    days = []
    day = first
    while day <= last:
        if is_working_day(day):
            days.append(day)
        day += timedelta(days=1)
    return days


def next_working_day(day: date) -> date:
    """Return `day` itself if the centre works then, else the next working day."""
    while not is_working_day(day):
        day += timedelta(days=1)
    return day


def previous_working_day(day: date) -> date:
    """Return `day` itself if the centre works then, else the working day before."""
    while not is_working_day(day):
        day -= timedelta(days=1)
    return day


def current_start_year(today: date) -> int:
    """Return the first calendar year of the academic year that `today` belongs to."""
    return today.year if today.month >= 9 else today.year - 1


def academic_years(today: date) -> list[AcademicYear]:
    """List the academic years from 2023/24 to the one that `today` belongs to."""
    last = current_start_year(today)
    if last < FIRST_ACADEMIC_YEAR:
        raise ValueError(
            f"the demo centre starts on 1 September {FIRST_ACADEMIC_YEAR}; "
            f"today ({today.isoformat()}) is earlier"
        )
    return [AcademicYear(year) for year in range(FIRST_ACADEMIC_YEAR, last + 1)]
