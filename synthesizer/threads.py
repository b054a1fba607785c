"""How many threads llama.cpp should use right now.

llama.cpp's threads meet at a barrier many times per token. When another process keeps a
core busy, one of our threads is descheduled and the others wait for it: measured on the
2-core machine with other jobs running, Qwen2.5-0.5B generated 0.9-3 tokens/s with 2 threads
and 11-16 tokens/s with 1 (first token 12 s vs 5 s). On an idle machine 2 threads are faster
(about 41 vs 28 tokens/s). So before each generation we look at how many runnable threads
other processes have, and use only the cores they leave free.
"""
from __future__ import annotations

import os
import time


def _system_runnable() -> int | None:
    """Runnable threads on the whole machine now (the 4th field of /proc/loadavg)."""
    try:
        with open("/proc/loadavg", encoding="ascii") as f:
            return int(f.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def _own_runnable() -> int:
    """Runnable threads of this process (they are about to sleep or are us)."""
    n = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 1
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/stat", encoding="ascii", errors="replace") as f:
                stat = f.read()
        except OSError:
            continue
        if stat[stat.rfind(")") + 2:stat.rfind(")") + 3] == "R":
            n += 1
    return max(n, 1)


def busy_cores(samples: int = 5, interval_s: float = 0.004) -> float:
    """Mean number of other processes' runnable threads over a few quick samples (about 20 ms).
    Falls back to the 1-minute load average where /proc is missing."""
    seen = []
    for i in range(samples):
        total = _system_runnable()
        if total is None:
            try:
                return max(0.0, os.getloadavg()[0])
            except OSError:
                return 0.0
        seen.append(max(0, total - _own_runnable()))
        if i + 1 < samples:
            time.sleep(interval_s)
    return sum(seen) / len(seen)


def threads_for_now(max_threads: int) -> int:
    """`max_threads`, less the cores other processes are using (at least 1). A core counts as
    taken when it was busy in 40% of the samples: one thread too few costs about a third of the
    speed, one too many costs most of it."""
    cores = os.cpu_count() or 1
    free = cores - int(busy_cores() + 0.6)
    return max(1, min(max_threads, free))
