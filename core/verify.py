"""Verify-once checksum checks for large files (models, index files).

Hashing a 1 GB model costs seconds, so a file that passed is remembered by (path, size,
mtime): in this process always, and across processes in a stamp file beside it when that
location is writable. A changed size or mtime means the file is hashed again."""
from __future__ import annotations

import os
import threading

from core.errors import FathomError, ModelUnavailable
from core.files import sha256_file

_PASSED: dict[str, str] = {}
_LOCK = threading.Lock()


def _key(path: str, expected: str) -> str:
    st = os.stat(path)
    return f"{expected} {st.st_size} {int(st.st_mtime)}"  # the format older stamps used


def stamp_path(path: str) -> str:
    return path + ".sha256-ok"


def verify_once(path: str, expected: str, error: type[FathomError] = ModelUnavailable,
                hint: str = "", size_bytes: int | None = None, persist: bool = True) -> None:
    """Raise `error` (naming `path` and `hint`) unless the file's sha256 is `expected`.

    A missing file raises `error` too. Passing files are remembered as described above."""
    try:
        key = _key(path, expected)
    except OSError as exc:
        raise error(f"{path} is missing or unreadable ({exc.strerror}){'; ' + hint if hint else ''}") from None
    with _LOCK:
        if _PASSED.get(path) == key:
            return
    if persist:
        try:
            with open(stamp_path(path)) as f:
                if f.read().strip() == key:
                    with _LOCK:
                        _PASSED[path] = key
                    return
        except OSError:
            pass
    if size_bytes is not None and os.path.getsize(path) != size_bytes:
        raise error(f"{path} has {os.path.getsize(path)} bytes, expected {size_bytes}"
                    f"{'; ' + hint if hint else ''}")
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise error(f"cannot read {path} ({exc.strerror}){'; ' + hint if hint else ''}") from None
    if actual != expected:
        raise error(f"{path} fails its sha256 check ({actual[:12]}... != {expected[:12]}...)"
                    f"{'; ' + hint if hint else ''}")
    with _LOCK:
        _PASSED[path] = key
    if persist:
        try:
            with open(stamp_path(path), "w") as f:
                f.write(key)
        except OSError:
            pass  # read-only location (site-packages, a read-only data dir): verify again next process


def forget(path: str | None = None) -> None:
    """Drop remembered results (all, or one path) so the next check hashes again."""
    with _LOCK:
        if path is None:
            _PASSED.clear()
        else:
            _PASSED.pop(path, None)
