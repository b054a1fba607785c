"""Dates a page carries (HTTP Last-Modified, sitemap <lastmod>, <meta> and <time> tags), as
ISO 8601 strings: "2024-03-05" for a bare date, "2024-03-05T10:20:00+00:00" with a time
(UTC when the source gave a zone or is an HTTP date). Anything unparseable gives ""."""
from __future__ import annotations

import datetime as dt
import email.utils
import re

_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ISO_PREFIX = re.compile(r"^\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?")
MIN_YEAR, MAX_YEAR = 1990, 2100  # outside: a placeholder such as 0001-01-01, not a date


def iso_date(value: str | None) -> str:
    """`value` (ISO 8601 or an HTTP/RFC 2822 date) in ISO 8601, or "" when it is not a date."""
    value = (value or "").strip()
    if not value:
        return ""
    m = _ISO_PREFIX.match(value)
    if m:
        text = m.group(0)
        if _ISO_DATE.match(text):
            try:
                day = dt.date.fromisoformat(text)
            except ValueError:
                return ""
            return day.isoformat() if MIN_YEAR <= day.year <= MAX_YEAR else ""
        try:
            when = dt.datetime.fromisoformat(text.replace(" ", "T", 1))
        except ValueError:
            return ""
        return _fmt(when)
    return http_date_iso(value)


def http_date_iso(value: str | None) -> str:
    """An HTTP date ("Tue, 05 Mar 2024 10:20:00 GMT") in ISO 8601, or ""."""
    if not value:
        return ""
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return ""
    return _fmt(when)


def _fmt(when: dt.datetime) -> str:
    if not MIN_YEAR <= when.year <= MAX_YEAR:
        return ""
    if when.tzinfo is not None:
        when = when.astimezone(dt.timezone.utc)
    return when.replace(microsecond=0).isoformat()
