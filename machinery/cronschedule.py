"""Cron schedules as a CronJob reads them: five fields or an ``@descriptor``, in a time zone.

Used by the CronJob validation (``machinery.api``) and the CronJob controller. Parsing follows
the rules of the standard cron parser Kubernetes uses: exactly five fields (minute, hour, day of
month, month, day of week), ``?`` as a wildcard in the day fields, the descriptors ``@yearly``,
``@annually``, ``@monthly``, ``@weekly``, ``@daily``, ``@midnight`` and ``@hourly``, and no
``TZ=``/``CRON_TZ=`` prefix (the ``timeZone`` field says where the schedule runs). Times are
computed by croniter; the range checks here give the standard parser's messages (``end of range
(61) above maximum (59): 61``), which the API reports.
"""

from __future__ import annotations

import zoneinfo
from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from croniter import croniter
from croniter.croniter import CroniterError

DESCRIPTORS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
TZ_IN_SCHEDULE = "cannot use TZ or CRON_TZ in schedule, use timeZone field instead"
LOCAL_TZ = "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones"


class ScheduleError(ValueError):
    """The schedule or time zone cannot be used; the message is the one the API reports."""


_MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_DAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_BOUNDS: tuple[tuple[int, int, dict[str, int]], ...] = (
    (0, 59, {}), (0, 23, {}), (1, 31, {}),
    (1, 12, {m: i + 1 for i, m in enumerate(_MONTHS)}),
    (0, 6, {d: i for i, d in enumerate(_DAYS)}),
)
"""(minimum, maximum, names) of minute, hour, day of month, month and day of week."""


def _parse_int(text: str, names: dict[str, int]) -> int:
    if text.lower() in names:
        return names[text.lower()]
    try:
        value = int(text, 10)
    except ValueError:
        raise ScheduleError(f'failed to parse int from {text}: strconv.Atoi: parsing "{text}": invalid syntax') \
            from None
    if value < 0:
        raise ScheduleError(f"negative number ({value}) not allowed: {text}")
    return value


def _check_field(field: str, low: int, high: int, names: dict[str, int]) -> None:
    """The range checks of the standard parser, with its messages (``getRange``)."""
    for expr in field.split(","):
        range_and_step = expr.split("/")
        if len(range_and_step) > 2:
            raise ScheduleError(f"too many slashes: {expr}")
        bounds = range_and_step[0].split("-")
        if len(bounds) > 2:
            raise ScheduleError(f"too many hyphens: {expr}")
        if bounds[0] in ("*", "?"):
            start, end = low, high
        else:
            start = _parse_int(bounds[0], names)
            end = _parse_int(bounds[1], names) if len(bounds) == 2 else start
        if len(range_and_step) == 2:
            step = _parse_int(range_and_step[1], names)
            if step <= 0:
                raise ScheduleError(f"step of range should be a positive number: {expr}")
        if start < low:
            raise ScheduleError(f"beginning of range ({start}) below minimum ({low}): {expr}")
        if end > high:
            raise ScheduleError(f"end of range ({end}) above maximum ({high}): {expr}")
        if start > end:
            raise ScheduleError(f"beginning of range ({start}) beyond end of range ({end}): {expr}")


def _expression(schedule: str) -> str:
    text = schedule.strip()
    if text.startswith(("TZ=", "CRON_TZ=")):
        raise ScheduleError(TZ_IN_SCHEDULE)
    if text.startswith("@"):
        if text not in DESCRIPTORS:
            raise ScheduleError(f"unrecognized descriptor: {text}")
        return DESCRIPTORS[text]
    fields = text.split()
    if len(fields) != 5:
        raise ScheduleError(f"expected exactly 5 fields, found {len(fields)}: {text}")
    for field, (low, high, names) in zip(fields, _BOUNDS, strict=True):
        _check_field(field, low, high, names)
    fields[2] = "*" if fields[2] == "?" else fields[2]
    fields[4] = "*" if fields[4] == "?" else fields[4]
    expr = " ".join(fields)
    if not croniter.is_valid(expr):
        try:
            croniter(expr)
        except (CroniterError, ValueError, KeyError) as exc:
            raise ScheduleError(str(exc) or f"invalid schedule: {text}") from exc
        raise ScheduleError(f"invalid schedule: {text}")
    return expr


def time_zone(name: str | None) -> tzinfo | None:
    """The zone a ``timeZone`` names (None when unset); ScheduleError when unknown."""
    if name is None:
        return None
    if name.lower() == "local":
        raise ScheduleError(LOCAL_TZ)
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ScheduleError(f"unknown time zone {name}") from exc


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule; times in and out are timezone-aware."""

    expression: str
    zone: tzinfo | None

    def next_after(self, moment: datetime) -> datetime | None:
        """The first scheduled time strictly after ``moment`` (None: never, e.g. February 30)."""
        local = moment.astimezone(self.zone) if self.zone is not None else moment
        try:
            nxt: datetime = croniter(self.expression, local).get_next(datetime)
        except CroniterError:
            return None
        return nxt.astimezone(moment.tzinfo)

    def most_recent(self, start: datetime, end: datetime, *, limit: int = 100) -> tuple[datetime | None, int]:
        """The last scheduled time in (start, end] and how many there were (counting stops past
        ``limit``, so a schedule missed for a year costs ``limit`` steps, not a year of them)."""
        count = 0
        last: datetime | None = None
        t = self.next_after(start)
        while t is not None and t <= end:
            count += 1
            last = t
            if count > limit:
                local = end.astimezone(self.zone) if self.zone is not None else end
                prev: datetime = croniter(self.expression, local + timedelta(microseconds=1)).get_prev(datetime)
                return prev.astimezone(end.tzinfo), count
            t = self.next_after(t)
        return last, count


def check(schedule: str) -> None:
    """Raise ScheduleError when ``schedule`` is not a valid schedule."""
    _expression(schedule)


def parse(schedule: str, zone_name: str | None = None) -> Schedule:
    """Parse ``schedule`` in ``zone_name`` (None: the controller's zone, UTC); ScheduleError if bad."""
    return Schedule(_expression(schedule), time_zone(zone_name))
