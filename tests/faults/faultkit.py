"""Helpers of the fault suite: a small tmpfs to use as a data directory, a slow chain site."""
from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
import time

import pytest

from tests.test_crawl import html, prose


@contextlib.contextmanager
def tmpfs(size: str):
    """A fresh tmpfs of `size` mounted on a temp dir; skips the test where mounting is not allowed."""
    path = tempfile.mkdtemp(prefix="fathom-tmpfs-")
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        os.rmdir(path)
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): {proc.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", path], capture_output=True)
        os.rmdir(path)


def remount(path: str, mode: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{mode}", path], check=True, capture_output=True)


def fill(path: str, leave_bytes: int) -> str:
    """Fill the filesystem of `path` until `leave_bytes` are free; returns the filler's path."""
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    filler = os.path.join(path, "filler")
    with open(filler, "wb") as f:
        f.write(b"\0" * max(0, free - leave_bytes))
    return filler


def chain_site(pages: int, delay_s: float) -> dict:
    """index -> p1 -> ... -> pN, each page served after `delay_s`: a crawl that takes a while."""
    def page(i):
        body = html(f"Chain page {i}", links=[f"p{i + 1}.html"] if i < pages else [])

        def handler(h):
            time.sleep(delay_s)
            try:
                h.reply(200, {"Content-Type": "text/html"}, body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the crawler was killed mid-request

        return handler
    return {"/docs/index.html": html("Chain index", links=["p1.html"]),
            **{f"/docs/p{i}.html": page(i) for i in range(1, pages + 1)}}


def star_site(name: str, pages: int, words: int) -> dict:
    """An index linking to `pages` pages of `words` words of distinct text each."""
    links = [f"{name}{i}.html" for i in range(1, pages + 1)]
    return {f"/{name}/index.html": html(f"{name} index", links=links),
            **{f"/{name}/{name}{i}.html": html(f"{name} page {i}", prose(f"{name}{i}", words)) for i in range(1, pages + 1)}}
