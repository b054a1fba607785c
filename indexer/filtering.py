"""Filter semantics shared by both engines, so tantivy (inside its query) and the dense side
(a predicate over the chunk table) keep exactly the same chunks.

Dates: `since`/`until` are ISO dates or date-times ("2024-05-01", "2024-05-01T12:00:00");
naive ones are UTC. `since` is inclusive; a date-only `until` includes that whole day. A chunk
whose page has no value for the chosen date field never passes a date filter.
Languages: compared on the primary subtag, lower-cased ("en-US" matches "en")."""
from __future__ import annotations

import datetime as dt
import functools

from core.errors import QueryError

DATE_FIELDS = ("changed_at", "fetched_at", "modified_at")


@functools.lru_cache(maxsize=1 << 16)  # the dense-side predicate parses each chunk's date per query
def parse_date(value: str) -> dt.datetime | None:
    """An ISO date or date-time as an aware UTC datetime at whole seconds; None when empty."""
    value = (value or "").strip()
    if not value:
        return None
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    try:
        parsed = dt.datetime.fromisoformat(value)
        if parsed.tzinfo is not None:
            parsed.astimezone(dt.timezone.utc)  # 0001-01-01T00:00+01:00 has no UTC time
    except (ValueError, OverflowError):
        raise QueryError(f"not an ISO date or date-time: {value!r} (use e.g. 2024-05-01)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.astimezone(dt.timezone.utc).replace(microsecond=0)


def date_bounds(since: str, until: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """[lower, upper) of a date filter; a date-only `until` ends at the next midnight."""
    lower = parse_date(since)
    upper = parse_date(until)
    if upper is not None:
        try:
            upper = upper + (dt.timedelta(days=1) if len(until.strip()) == 10 else dt.timedelta(seconds=1))
        except OverflowError:
            upper = None  # 9999-12-31: "until the end of time" bounds nothing
    if lower is not None and upper is not None and lower >= upper:
        raise QueryError(f"empty date range: since {since!r} is not before until {until!r}")
    return lower, upper


def in_date_range(value: str, lower: dt.datetime | None, upper: dt.datetime | None) -> bool:
    if lower is None and upper is None:
        return True
    try:
        when = parse_date(value)
    except ValueError:
        return False
    if when is None:
        return False
    return (lower is None or when >= lower) and (upper is None or when < upper)


def lang_key(lang: str) -> str:
    """The primary language subtag, lower-cased: what the `lang` field holds and filters compare."""
    return (lang or "").strip().lower().replace("_", "-").split("-")[0]
