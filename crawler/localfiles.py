"""Crawling local HTML files through file:// URLs.

Scrapy's file download handler reads a file; this module adds what an HTTP server would say:
a directory seed stands for the HTML files under it, a missing file is a 404 (so a deleted
file becomes a tombstone), a file past max_page_bytes is too_large, and a file answers with an
ETag of its mtime and size, so a recrawl gets 304 for files that did not change without reading
them. Robots.txt does not apply to files (Scrapy's RobotsTxtMiddleware skips file:// URLs).
"""
from __future__ import annotations

import email.utils
import mimetypes
import os
from pathlib import Path
from urllib.parse import urlsplit

from scrapy.exceptions import DownloadCancelledError
from scrapy.http import Response
from w3lib.url import file_uri_to_path

HTML_SUFFIXES = (".html", ".htm", ".xhtml")


def path_to_seed(seed: str) -> str:
    """A seed as a URL: a local path (absolute or relative) becomes a file:// URL; a directory's
    URL ends with '/'. Anything else is returned unchanged."""
    if "://" in seed:
        return seed
    path = Path(seed).expanduser().resolve()
    uri = path.as_uri()
    return uri + "/" if path.is_dir() and not uri.endswith("/") else uri


def local_path(url: str) -> str | None:
    """The file-system path of a file:// URL, else None."""
    if urlsplit(url).scheme != "file":
        return None
    return file_uri_to_path(url)


def file_seed_pages(seed: str) -> list[str] | None:
    """The file:// URLs of the HTML files under a directory seed (sorted), or None when `seed`
    is not a local directory."""
    path = local_path(seed)
    if path is None or not os.path.isdir(path):
        return None
    found = []
    for dirpath, dirnames, filenames in os.walk(path):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found += [os.path.join(dirpath, f) for f in filenames if f.lower().endswith(HTML_SUFFIXES)]
    return [Path(f).as_uri() for f in sorted(found)]


def file_etag(st: os.stat_result) -> str:
    return f'"{st.st_mtime_ns:x}-{st.st_size:x}"'


class LocalFileMiddleware:
    """Downloader middleware for file:// requests: 404 for a missing file, a directory's
    index.html for a directory (404 without one), too_large past DOWNLOAD_MAXSIZE, 304 when If-None-Match names the file's current ETag;
    responses get ETag, Last-Modified and a Content-Type guessed from the file name."""

    def __init__(self, max_size: int):
        self.max_size = max_size

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler.settings.getint("DOWNLOAD_MAXSIZE"))

    def process_request(self, request):
        path = local_path(request.url)
        if path is None:
            return None
        try:
            st = os.stat(path)
        except OSError:
            return Response(request.url, status=404, request=request)
        if os.path.isdir(path) and os.path.isfile(os.path.join(path, "index.html")):
            # what a web server does for a directory: its index.html, the directory URL becoming an
            # alias. Scrapy follows no redirect to a file:// URL, so the request is replaced instead.
            return request.replace(url=Path(path, "index.html").as_uri())
        if not os.path.isfile(path):
            return Response(request.url, status=404, request=request)
        if self.max_size and st.st_size > self.max_size:
            raise DownloadCancelledError(f"{path} is {st.st_size} bytes, over max_page_bytes {self.max_size}")
        if request.headers.get(b"If-None-Match", b"").decode("latin-1") == file_etag(st):
            return Response(request.url, status=304, request=request, headers=self._headers(path, st))
        return None

    def process_response(self, request, response):
        path = local_path(request.url)
        if path is None or response.status != 200 or b"Content-Type" in response.headers:
            return response
        try:
            st = os.stat(path)
        except OSError:
            return response
        response.headers.update(self._headers(path, st))
        return response

    @staticmethod
    def _headers(path: str, st: os.stat_result) -> dict:
        ctype = mimetypes.guess_type(path)[0] or "application/octet-stream"
        return {"Content-Type": ctype, "ETag": file_etag(st),
                "Last-Modified": email.utils.formatdate(st.st_mtime, usegmt=True)}
