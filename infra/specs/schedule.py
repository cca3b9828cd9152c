"""The health job's schedule: validated once, written in each scheduler's own dialect.

Cloud Scheduler (GCP) and Container Apps jobs (Azure) take a five-field unix cron expression
(``minute hour day-of-month month day-of-week``, UTC here). EventBridge Scheduler (AWS) takes
``rate(N unit)``, ``cron(...)`` with six fields, or ``at(...)`` for a one-off. So:

- :func:`unix_cron` checks a five-field expression field by field (numbers in range, ``*``,
  ranges, steps, lists, month and weekday names), so a typo fails at program start, naming the key,
  rather than halfway through ``pulumi up``;
- :func:`aws_expression` accepts EventBridge's own ``rate(...)`` / ``cron(...)``, or translates a
  five-field expression into ``cron(...)``: EventBridge wants ``?`` in one of the two day fields and
  has no year-less form, counts weekdays 1-7 from Sunday where unix cron counts 0-6 (so numeric
  weekdays are refused there rather than silently shifted: names mean the same in both), and is
  given explicit starts for ``*/N`` steps.

Pure functions, no Pulumi: the tests call them directly. Each raises :class:`ValueError` with a
reason; :mod:`infra.specs.health_job` turns it into a ConfigError naming the key.
"""

from __future__ import annotations

import re
from typing import Final

__all__ = ["aws_expression", "unix_cron"]

_MONTHS: Final = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_WEEKDAYS: Final = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# name, lowest, highest, names allowed instead of numbers (unix cron: 7 is Sunday as well as 0)
_FIELDS: Final = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, _MONTHS),
    ("day-of-week", 0, 7, _WEEKDAYS),
)
_ITEM = re.compile(r"(?P<range>\*|(?P<low>[0-9A-Za-z]+)(-(?P<high>[0-9A-Za-z]+))?)(/(?P<step>\d+))?")
_RATE = re.compile(r"rate\((?P<n>[1-9]\d*) (?P<unit>minutes?|hours?|days?)\)")


def _value(token: str, field: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if token.isdigit():
        number = int(token)
        if not low <= number <= high:
            raise ValueError(f"{field} {number} is outside {low}-{high}")
        return number
    if token.upper() in names:
        return names.index(token.upper()) + (1 if field == "month" else 0)
    raise ValueError(f"{field} {token!r} is not a number{' or a name' if names else ''}")


def _check_field(text: str, field: str, low: int, high: int, names: tuple[str, ...]) -> None:
    for item in text.split(","):
        match = _ITEM.fullmatch(item)
        if match is None:
            raise ValueError(f"{field} {item!r} is not *, N, N-M, a step (/N) or a list of those")
        if match["step"] is not None and int(match["step"]) == 0:
            raise ValueError(f"{field} step 0 in {item!r}")
        if match["low"] is not None:
            first = _value(match["low"], field, low, high, names)
            if match["high"] is not None and _value(match["high"], field, low, high, names) < first:
                raise ValueError(f"{field} range {item!r} runs backwards")


def unix_cron(expression: str) -> tuple[str, ...]:
    """The five fields of a unix cron expression, after checking each; raises ValueError."""
    fields = tuple(expression.split())
    if len(fields) != len(_FIELDS):
        raise ValueError(
            f"{expression!r} is not a five-field cron expression (minute hour day-of-month month "
            'day-of-week, such as "* * * * *" for every minute)'
        )
    for text, (field, low, high, names) in zip(fields, _FIELDS, strict=True):
        _check_field(text, field, low, high, names)
    return fields


def _aws_step(field: str, start: str) -> str:
    """``*/N`` as EventBridge documents steps: from an explicit start (``0/15``)."""
    return re.sub(r"^\*/", f"{start}/", field)


def aws_expression(schedule: str) -> str:
    """EventBridge Scheduler's expression for ``schedule``: ``rate(...)`` and ``cron(...)`` pass
    (checked for form), a five-field unix cron is translated; raises ValueError."""
    if schedule.startswith("rate("):
        match = _RATE.fullmatch(schedule)
        if match is None or (match["n"] == "1") == match["unit"].endswith("s"):
            raise ValueError(
                f"{schedule!r} is not an EventBridge rate such as rate(1 minute) or rate(5 minutes)"
            )
        return schedule
    if schedule.startswith("cron("):
        if not schedule.endswith(")") or len(schedule[5:-1].split()) != 6:
            raise ValueError(f"{schedule!r}: EventBridge cron(...) has six fields, the last the year")
        return schedule
    if schedule.startswith("at("):
        raise ValueError("at(...) runs once; a health job must repeat: use rate(...) or cron")
    minute, hour, day, month, weekday = unix_cron(schedule)
    if weekday != "*" and any(c.isdigit() for c in weekday):
        raise ValueError(
            f"day-of-week {weekday!r}: EventBridge numbers weekdays 1-7 from Sunday, unix cron 0-6; "
            "use names (MON-FRI) so every cloud reads the same days"
        )
    if weekday == "*":
        weekday = "?"
    elif day == "*":
        day = "?"
    else:
        raise ValueError("EventBridge cannot restrict both day-of-month and day-of-week; use one of them")
    fields = (_aws_step(minute, "0"), _aws_step(hour, "0"), _aws_step(day, "1"), _aws_step(month, "1"))
    return f"cron({' '.join(fields)} {weekday} *)"
