"""Durations in pgmill.yaml: `90s`, `5m`, `1h30m`, `2d`, or words (`30 minutes`, `6 hours`, `2 days`)."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import AfterValidator

_UNITS = {1: ("s", "sec", "secs", "second", "seconds"), 60: ("m", "min", "mins", "minute", "minutes"),
          3600: ("h", "hr", "hrs", "hour", "hours"), 86400: ("d", "day", "days"), 604800: ("w", "week", "weeks")}
_UNIT_SECONDS = {name: seconds for seconds, names in _UNITS.items() for name in names}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")


def parse_duration(text: str | float | int) -> float:
    """Seconds in a duration; ValueError naming the accepted forms otherwise."""
    if isinstance(text, int | float) and not isinstance(text, bool):
        if text <= 0:
            raise ValueError(f"duration {text!r} must be positive")
        return float(text)
    s = str(text).strip().lower()
    pos, total = 0, 0.0
    for m in _PART.finditer(s):
        if s[pos:m.start()].strip(" ,"):
            break
        unit = m.group(2)
        if unit not in _UNIT_SECONDS:
            break
        total += float(m.group(1)) * _UNIT_SECONDS[unit]
        pos = m.end()
    else:
        if pos == len(s) and total > 0:
            return total
    raise ValueError(f"{text!r} is not a duration: use e.g. 90s, 5m, 1h30m, 2d or '6 hours'")


def _checked(text: str) -> str:
    parse_duration(text)
    return text


#: a duration field of pgmill.yaml, kept as written and checked when the file is read
Duration = Annotated[str, AfterValidator(_checked)]
