"""URL normalisation and crawl scope."""
from __future__ import annotations

import functools
import posixpath
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from core.errors import InvalidURL

_TRACKING = re.compile(r"^(utm_\w+|fbclid|gclid|mc_cid|mc_eid|ref_src)$", re.I)
_DEFAULT_PORTS = {"http": 80, "https": 443}


@functools.lru_cache(maxsize=1 << 16)  # docs sites link the same nav URLs from every page
def normalize_url(url: str) -> str:
    """Canonical form: lower-case scheme and host, no default port, no fragment,
    sorted query without tracking parameters, resolved dot segments."""
    try:  # urllib edge: a broken IPv6 host or a bad port is a ValueError
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise InvalidURL(f"cannot parse URL {url!r}: {exc}") from None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    netloc = host if port is None or _DEFAULT_PORTS.get(scheme) == port else f"{host}:{port}"
    path = parts.path or "/"
    if "." in path:
        trailing = path.endswith("/")
        path = posixpath.normpath(path)
        if trailing and not path.endswith("/"):
            path += "/"
        if path.startswith("//"):
            path = "/" + path.lstrip("/")
    query = urlencode(sorted((k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True)
                             if not _TRACKING.match(k)))
    return urlunsplit((scheme, netloc, path, query, ""))


@dataclass(frozen=True)
class Scope:
    """Which URLs a crawl may follow: hosts and path prefixes taken from the seeds
    unless the config names them, plus include/exclude regular expressions. file:// URLs are
    followed only from file:// seeds (host ""), under the seeds' directories."""

    hosts: frozenset[str]
    prefixes: tuple[str, ...]
    include: tuple[re.Pattern, ...] = ()
    exclude: tuple[re.Pattern, ...] = ()

    @classmethod
    def from_seeds(cls, seeds: list[str], hosts=(), prefixes=(), include=(), exclude=()) -> "Scope":
        seed_parts = [urlsplit(normalize_url(s)) for s in seeds]
        if not hosts:
            hosts = [p.netloc for p in seed_parts]
        if not prefixes:
            prefixes = [p.path if p.path.endswith("/") else posixpath.dirname(p.path).rstrip("/") + "/"
                        for p in seed_parts]
        return cls(frozenset(h.lower() for h in hosts), tuple(prefixes),
                   tuple(re.compile(p) for p in include), tuple(re.compile(p) for p in exclude))

    def allows(self, url: str) -> bool:
        parts = urlsplit(url)
        if parts.scheme == "file":  # only from file:// seeds, whose host is ""
            if "" not in self.hosts or parts.netloc:
                return False
        elif parts.scheme not in ("http", "https") or parts.netloc not in self.hosts:
            return False
        if not any(parts.path.startswith(p) for p in self.prefixes):
            return False
        if self.include and not any(p.search(url) for p in self.include):
            return False
        return not any(p.search(url) for p in self.exclude)
