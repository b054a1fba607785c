"""Batch embedding on Ray Data (issue 15): chunks/s of `Engine.index(ray=...)` with 1 and 2 Ray
workers against the ordinary local build (the baseline), in the same run, each from a cold
embedding cache on the same pages; plus the Ray start-up cost, and a projection to 1M pages.

    flock /tmp/fathom-bench.lock nice -n 5 python benchmarks/ray_embed.py --store DATA/crawl.duckdb [--pages 60]
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from crawler.store import CrawlStore  # noqa: E402
from fathom.config import Config  # noqa: E402
from indexer.build import build_index  # noqa: E402
from indexer.embedding import load_embedder  # noqa: E402
from indexer.ray_embed import ray_embed  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", required=True)
    ap.add_argument("--pages", type=int, default=60, help="first N pages of the store")
    ap.add_argument("--workers", default="1,2")
    args = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))
    with CrawlStore(args.store, read_only=True) as store:
        pages = [p for _, p in zip(range(args.pages), store.pages())]
    config = Config().index
    embedder = load_embedder(config.embedder, config.threads)
    load = [open("/proc/loadavg").read().split()[:3]]
    work = tempfile.mkdtemp(prefix="fathom-rayembed-")
    rows = []
    try:
        t0 = time.monotonic()
        r = build_index("", os.path.join(work, "local"), config, embedder, progress=lambda *a: None, pages=pages)
        rows.append(("local (baseline, 2 threads)", r.embedded, time.monotonic() - t0))
        import ray
        t0 = time.monotonic()
        ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 1024 * 1024, log_to_driver=False)
        ray_start = time.monotonic() - t0
        for n in [int(x) for x in args.workers.split(",")]:
            t0 = time.monotonic()
            r = build_index("", os.path.join(work, f"ray{n}"), config, embedder, progress=lambda *a: None,
                            pages=pages, embed=ray_embed("auto", config, workers=n, threads_per_worker=2 // n or 1))
            rows.append((f"Ray Data, {n} worker(s) x {2 // n or 1} thread(s)", r.embedded, time.monotonic() - t0))
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    load.append(open("/proc/loadavg").read().split()[:3])
    base = rows[0][1] / rows[0][2]
    print(f"{len(pages)} pages, {rows[0][1]} chunks embedded from a cold cache per build; ray.init took "
          f"{ray_start:.1f} s (not counted below); loadavg {load[0]} -> {load[1]}")
    print("| build | chunks | build s | chunks/s | vs local |")
    print("|---|---|---|---|---|")
    for name, chunks, secs in rows:
        print(f"| {name} | {chunks} | {secs:.1f} | {chunks / secs:.1f} | {chunks / secs / base:.2f}x |")
    best = max(c / s for _, c, s in rows[1:])
    per_machine = best  # this 2-core machine's Ray rate
    chunks_1m = 1_000_000 * 10.7  # 12,516 chunks / 1,169 pages on the PostgreSQL docs
    for machines in (1, 10, 100):
        hours = chunks_1m / (per_machine * machines) / 3600
        print(f"projection: 1M pages ~ {chunks_1m / 1e6:.1f}M chunks on {machines} such 2-core machine(s): "
              f"{hours:.1f} h of embedding")


if __name__ == "__main__":
    main()
