"""Index generations on disk: gen-NNNNNN directories, a CURRENT pointer switched by
rename, and a writer lock. Readers only ever follow CURRENT to a complete generation."""
from __future__ import annotations

import fcntl
import os
import re
import shutil

from core.errors import FathomError, IndexLocked, IndexNotFound

_GEN = re.compile(r"^gen-(\d{6})$")


def current_generation(root: str) -> str:
    """Path of the generation CURRENT points to."""
    pointer = os.path.join(root, "CURRENT")
    if not os.path.exists(pointer):
        raise IndexNotFound(f"no index in {root}; run `fathom index` after `fathom crawl`")
    with open(pointer) as f:
        name = f.read().strip()
    path = os.path.join(root, name)
    if not _GEN.match(name) or not os.path.isdir(path):
        from core.errors import IndexCorrupt
        raise IndexCorrupt(f"{pointer} points to {name!r}, which is not a generation; "
                           "rebuild with `fathom index --rebuild`")
    return path


def generations(root: str) -> list[str]:
    """Paths of the complete generations under `root`, oldest first."""
    try:
        names = os.listdir(root)
    except FileNotFoundError:
        return []
    return [os.path.join(root, n) for n in sorted(names) if _GEN.match(n) and os.path.isdir(os.path.join(root, n))]


def next_generation_number(root: str) -> int:
    nums = [int(m.group(1)) for n in os.listdir(root) if (m := _GEN.match(n.removesuffix(".tmp")))]
    return max(nums, default=0) + 1


def switch_current(root: str, gen_dir: str) -> None:
    """Atomically point CURRENT at `gen_dir` (write a temp file, fsync, rename)."""
    tmp = os.path.join(root, "CURRENT.tmp")
    with open(tmp, "w") as f:
        f.write(os.path.basename(gen_dir) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(root, "CURRENT"))
    fd = os.open(root, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prune(root: str, keep: int, unfinished_only: bool = False) -> None:
    """Remove unfinished (.tmp) generations and (unless `unfinished_only`) all but the newest
    `keep` complete ones. Call it only while holding the WriterLock."""
    current = None
    try:
        current = os.path.basename(current_generation(root))
    except FathomError:
        pass
    gens = sorted(n for n in os.listdir(root) if _GEN.match(n))
    for name in os.listdir(root):
        if name.startswith("gen-") and name.endswith(".tmp"):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
    if unfinished_only:
        return
    for name in gens[:-keep] if keep else gens:
        if name != current:
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)


class WriterLock:
    """An exclusive, non-blocking lock on the index; a second writer gets IndexLocked."""

    def __init__(self, root: str):
        os.makedirs(root, exist_ok=True)
        self.path = os.path.join(root, "LOCK")
        self.fd: int | None = None

    def __enter__(self) -> "WriterLock":
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(self.fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self.fd)
            self.fd = None
            raise IndexLocked(f"another process (pid {holder}) is writing the index in "
                              f"{os.path.dirname(self.path)}; wait for it to finish") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, str(os.getpid()).encode())
        return self

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
