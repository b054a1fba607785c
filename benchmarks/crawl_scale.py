"""Distributed crawl (issue 15): pages/s of 1, 2 and 4 `fathom crawl --frontier redis://...`
processes sharing one crawl of a generated site served with artificial latency, next to a
plain single-process crawl (no Redis) of the same site in the same run.

A crawl is latency-bound: each process keeps `--concurrency` requests in flight, so more
processes keep more in flight until the per-host limit (held across processes through Redis)
or the CPU caps it. Prints a table and, with --json, the raw figures.

    flock /tmp/fathom-bench.lock nice -n 5 python benchmarks/crawl_scale.py [--latency 0.05] [--sections 40]
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from crawler.config import CrawlConfig  # noqa: E402
from crawler.store import CrawlStore  # noqa: E402
from tests.redis_server import redis_server  # noqa: E402
from tests.scale_site import scale_site, serve_site  # noqa: E402
from tests.test_crawl_distributed import finish, start_worker  # noqa: E402


def run(n: int, seeds, config, workdir: str, server) -> dict:
    server.hits.clear()
    server.max_active = 0
    stores = [os.path.join(workdir, f"w{n}-{i}.duckdb") for i in range(n)]
    t0 = time.monotonic()
    procs = [start_worker(seeds, config, s) for s in stores]
    reports = [finish(p, timeout=1800) for p in procs]
    wall = time.monotonic() - t0
    stored = 0
    for s in stores:
        with CrawlStore(s, read_only=True) as st:
            stored += st.stats()["pages"]
    fetched = sum(n_ for p, n_ in server.hits.items() if p.endswith(".html"))
    return {"processes": n, "frontier": bool(config.frontier), "wall_s": round(wall, 2),
            "pages_stored": stored, "html_fetched": fetched, "pages_per_s": round(stored / wall, 1),
            "max_in_flight_at_server": server.max_active, "per_process_new": [r["new"] for r in reports]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--latency", type=float, default=0.05, help="seconds each response waits")
    ap.add_argument("--sections", type=int, default=40)
    ap.add_argument("--per-section", type=int, default=25)
    ap.add_argument("--concurrency", type=int, default=8, help="requests in flight per process")
    ap.add_argument("--per-host", type=int, default=32, help="concurrency_per_host, held across processes")
    ap.add_argument("--processes", default="1,2,4")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    routes, expected = scale_site(args.sections, args.per_section)
    load_before = open("/proc/loadavg").read().split()[:3]
    rows = []
    with redis_server() as url, serve_site(routes, args.latency) as (base, server), \
            tempfile.TemporaryDirectory(prefix="fathom-crawlscale-") as workdir:
        seeds = [base + "site/index.html"]
        config = CrawlConfig(concurrency=args.concurrency, concurrency_per_host=args.per_host, max_pages=100_000)
        rows.append(run(1, seeds, config, workdir, server))  # baseline: plain Scrapy scheduler, no Redis
        import redis
        client = redis.Redis.from_url(url)
        for n in [int(x) for x in args.processes.split(",")]:
            client.flushdb()
            empty = client.info("memory")["used_memory"]
            row = run(n, seeds, dataclasses.replace(config, frontier=url), workdir, server)
            # what stays after the job: who stores which page, content hashes, SimHash bands
            row["redis_bytes_per_page"] = round((client.info("memory")["used_memory"] - empty) / row["pages_stored"])
            rows.append(row)
    load_after = open("/proc/loadavg").read().split()[:3]
    base_rate = rows[0]["pages_per_s"]
    if args.json:
        print(json.dumps({"rows": rows, "expected_pages": expected, "latency_s": args.latency,
                          "loadavg_before": load_before, "loadavg_after": load_after}, indent=2))
        return
    print(f"site: {expected} pages, {args.latency * 1000:.0f} ms per response, concurrency {args.concurrency} "
          f"per process, per-host limit {args.per_host} (across processes); load {load_before} -> {load_after}")
    print("| processes | frontier | wall s | pages stored | HTML fetched | pages/s | vs plain | max in flight | "
          "Redis B/page |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['processes']} | {'redis' if r['frontier'] else 'plain (baseline)'} | {r['wall_s']} | "
              f"{r['pages_stored']} | {r['html_fetched']} | {r['pages_per_s']} | "
              f"{r['pages_per_s'] / base_rate:.2f}x | {r['max_in_flight_at_server']} | "
              f"{r.get('redis_bytes_per_page', '-')} |")


if __name__ == "__main__":
    main()
