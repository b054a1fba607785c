"""Crawl benchmark (issue 4): Fathom's full crawler vs a bare Scrapy spider on the PostgreSQL
docs served from 127.0.0.1, then a recrawl of the unchanged site.

    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/crawl.py [--repeats N] [--site DIR] [--json]

Each repeat runs the bare fetch-only spider (`bare_crawl.py`, child process, raw HTML to disk)
and `Engine.crawl` into a fresh data directory (child process: extraction, dedup, DuckDB),
alternating which goes first, then recrawls the same store and, as the recrawl's floor, has the
bare spider send the same conditional GETs (the stored ETag / Last-Modified of every page). Both use the same Scrapy settings
(`crawler.run.scrapy_settings`, concurrency 8, no delay, robots obeyed). Checks on every run of
ours: the report's counts sum to the fetch-log rows of its run, and the recrawl re-extracts no
body and reports every stored page unchanged. Prints medians and writes benchmarks/out/crawl.json.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import duckdb  # noqa: E402

from crawler.run import scrapy_settings  # noqa: E402
from fathom.config import Config  # noqa: E402
from fathom.engine import Engine  # noqa: E402
from fathom.localsite import serve_directory  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "out", "crawl.json")
PG_DOCS = "/usr/share/doc/postgresql-doc-15/html"
MAX_PAGES = 100_000  # no page limit: the bare spider has none


class PeakRSS:
    """Polls /proc every 20 ms for this process's descendants and keeps the largest VmHWM
    (the kernel's own peak-RSS mark, so a peak between polls is not missed) among them."""

    def __init__(self) -> None:
        self.peak_kib = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> "PeakRSS":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def mib(self) -> float:
        return self.peak_kib / 1024

    def _poll(self) -> None:
        with open("/proc/self/cmdline", "rb") as f:
            me = f.read()
        while not self._stop.is_set():
            for pid in _descendants(os.getpid()):
                try:
                    with open(f"/proc/{pid}/cmdline", "rb") as f:
                        if f.read() == me:
                            continue  # forked but not yet exec'd: it still has this process's memory
                    with open(f"/proc/{pid}/status") as f:
                        for line in f:
                            if line.startswith("VmHWM:"):
                                self.peak_kib = max(self.peak_kib, int(line.split()[1]))
                                break
                except (OSError, ValueError):
                    pass  # the child has just exited
            self._stop.wait(0.02)


def _descendants(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{p}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{p}/task/{tid}/children") as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                continue
            out += kids
            todo += kids
    return out


def run_bare(seeds: list[str], settings: dict, out_dir: str, revisit: dict | None = None) -> dict:
    job = {"seeds": seeds, "out_dir": out_dir, "settings": settings, "revisit": revisit}
    with PeakRSS() as rss:
        t = time.perf_counter()
        proc = subprocess.run([sys.executable, os.path.join(HERE, "bare_crawl.py")], input=json.dumps(job),
                              capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t
    res = json.loads(proc.stdout.splitlines()[-1])
    return {"wall_s": wall, "pages": res["fetched"], "inproc_s": res["elapsed_s"], "peak_rss_mib": rss.mib,
            "loadavg_1min": os.getloadavg()[0]}


def run_ours(engine: Engine) -> dict:
    with PeakRSS() as rss:
        t = time.perf_counter()
        report = engine.crawl([engine.seed], max_pages=MAX_PAGES)
        wall = time.perf_counter() - t
    with duckdb.connect(engine.store_path, read_only=True) as db:
        rows = db.execute("SELECT count(*) FROM fetch_log WHERE run_id = ?", [report.run_id]).fetchone()[0]
    counted = report.new + report.changed + report.unchanged + sum(report.skipped.values())
    return {"wall_s": wall, "pages": report.fetched, "inproc_s": report.elapsed_s, "peak_rss_mib": rss.mib,
            "loadavg_1min": os.getloadavg()[0], "fetch_log_rows": rows, "report_sum": counted,
            "report": {k: v for k, v in report.__dict__.items()}}


def validators(store_path: str) -> dict:
    """{url: conditional-GET headers} for every live page of the store, as a recrawl sends them."""
    with duckdb.connect(store_path, read_only=True) as db:
        rows = db.execute("SELECT url, etag, last_modified FROM pages WHERE NOT deleted").fetchall()
    return {u: {k: v for k, v in (("If-None-Match", e), ("If-Modified-Since", lm)) if v} for u, e, lm in rows}


def median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def check(cond: bool, what: str, failures: list[str]) -> None:
    if not cond:
        failures.append(what)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="crawls of each kind (default 3)")
    parser.add_argument("--site", default=PG_DOCS, help=f"directory to serve (default {PG_DOCS})")
    parser.add_argument("--seed", default="index.html", help="seed path under the site (default index.html)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON instead of a table")
    args = parser.parse_args()
    if not os.path.isdir(args.site):
        sys.exit(f"{args.site} is missing: apt-get install postgresql-doc-15, or pass --site DIR")
    config = Config().crawl
    settings = {k: v for k, v in scrapy_settings(config).items() if k != "ITEM_PIPELINES"}
    root = tempfile.mkdtemp(prefix="fathom-crawl-bench-")
    load_before = os.getloadavg()
    bare, ours, recrawl, bare_re, failures = [], [], [], [], []
    try:
        with serve_directory(args.site) as base:
            seed = base + args.seed
            for i in range(args.repeats):
                engine = Engine(os.path.join(root, f"data-{i}"))
                engine.seed = seed
                order = ("bare", "ours") if i % 2 == 0 else ("ours", "bare")
                for kind in order:
                    if kind == "bare":
                        bare.append(run_bare([seed], settings, tempfile.mkdtemp(dir=root, prefix="bare-")))
                    else:
                        ours.append(run_ours(engine))
                revisit = validators(engine.store_path)
                for kind in order:  # the recrawl, and the bare spider's conditional GETs of the same pages
                    if kind == "bare":
                        bare_re.append(run_bare([], settings, tempfile.mkdtemp(dir=root, prefix="bare-"), revisit))
                    else:
                        recrawl.append(run_ours(engine))
                first, again = ours[-1], recrawl[-1]
                print(f"repeat {i + 1}/{args.repeats} ({order[0]} first): bare {bare[-1]['wall_s']:.2f} s "
                      f"({bare[-1]['pages']} p), ours {first['wall_s']:.2f} s ({first['pages']} p), "
                      f"recrawl {again['wall_s']:.2f} s, bare 304s {bare_re[-1]['wall_s']:.2f} s, "
                      f"load {os.getloadavg()[0]:.2f}", file=sys.stderr)
                for name, run in (("crawl", first), ("recrawl", again)):
                    check(run["report_sum"] == run["fetch_log_rows"],
                          f"{name} {i}: report counts sum to {run['report_sum']}, fetch log has "
                          f"{run['fetch_log_rows']} rows", failures)
                rep, rep0 = again["report"], first["report"]
                check(rep["extracted"] == 0, f"recrawl {i}: {rep['extracted']} bodies re-extracted", failures)
                check(rep["unchanged"] == rep0["pages_total"] and rep["new"] == rep["changed"] == 0,
                      f"recrawl {i}: {rep['unchanged']} unchanged of {rep0['pages_total']} stored, "
                      f"{rep['new']} new, {rep['changed']} changed", failures)
    finally:
        shutil.rmtree(root, ignore_errors=True)

    def rate(runs: list[dict], key: str) -> float:
        return statistics.median(r["pages"] / r[key] for r in runs)

    res = {
        "command": " ".join([os.path.relpath(sys.executable), *sys.argv]),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
                    "loadavg_before": load_before, "loadavg_after": os.getloadavg()},
        "site": args.site, "repeats": args.repeats, "concurrency": config.concurrency,
        "pages_bare": bare[-1]["pages"], "pages_ours": ours[-1]["pages"],
        "stored_ours": ours[-1]["report"]["pages_total"],
        "pages_per_s_bare": rate(bare, "wall_s"), "pages_per_s_ours": rate(ours, "wall_s"),
        "inproc_pages_per_s_bare": rate(bare, "inproc_s"), "inproc_pages_per_s_ours": rate(ours, "inproc_s"),
        "wall_s_bare": median(bare, "wall_s"), "wall_s_ours": median(ours, "wall_s"),
        "recrawl_wall_s": median(recrawl, "wall_s"), "recrawl_inproc_s": median(recrawl, "inproc_s"),
        "bare_revisit_wall_s": median(bare_re, "wall_s"), "bare_revisit_inproc_s": median(bare_re, "inproc_s"),
        "bare_revisit_pages": bare_re[-1]["pages"],
        "recrawl_extracted": max(r["report"]["extracted"] for r in recrawl),
        "peak_rss_mib_bare": max(r["peak_rss_mib"] for r in bare),
        "peak_rss_mib_ours": max(r["peak_rss_mib"] for r in ours),
        "peak_rss_mib_recrawl": max(r["peak_rss_mib"] for r in recrawl),
        "failures": failures, "runs": {"bare": bare, "ours": ours, "recrawl": recrawl, "bare_revisit": bare_re},
    }
    res["ratio_ours_vs_bare"] = res["pages_per_s_ours"] / res["pages_per_s_bare"]
    res["inproc_ratio_ours_vs_bare"] = res["inproc_pages_per_s_ours"] / res["inproc_pages_per_s_bare"]
    res["recrawl_speedup"] = res["wall_s_ours"] / res["recrawl_wall_s"]
    res["recrawl_vs_bare_revisit"] = res["recrawl_wall_s"] / res["bare_revisit_wall_s"]
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w") as f:
        json.dump(res, f, indent=2)
    if args.json:
        print(json.dumps({k: v for k, v in res.items() if k != "runs"}, indent=2))
    else:
        print_table(res)
    if failures:
        print("FAILED CHECKS:\n  " + "\n  ".join(failures), file=sys.stderr)
        sys.exit(1)


def print_table(r: dict) -> None:
    n = r["repeats"]
    rows = [
        ("figure", "ours", "bare", "ours/bare"),
        (f"pages/s, wall incl. process start (median of {n})",
         f"{r['pages_per_s_ours']:.1f} ({r['pages_ours']} p, {r['wall_s_ours']:.2f} s)",
         f"{r['pages_per_s_bare']:.1f} ({r['pages_bare']} p, {r['wall_s_bare']:.2f} s)",
         f"{r['ratio_ours_vs_bare']:.2f}"),
        ("pages/s, in-process", f"{r['inproc_pages_per_s_ours']:.1f}", f"{r['inproc_pages_per_s_bare']:.1f}",
         f"{r['inproc_ratio_ours_vs_bare']:.2f}"),
        ("peak RSS MiB of the crawl process", f"{r['peak_rss_mib_ours']:.0f}", f"{r['peak_rss_mib_bare']:.0f}",
         f"{r['peak_rss_mib_ours'] / r['peak_rss_mib_bare']:.2f}"),
        ("", "recrawl", "first crawl", "speed-up"),
        (f"unchanged site, wall s ({r['recrawl_extracted']} re-extracted)", f"{r['recrawl_wall_s']:.2f}",
         f"{r['wall_s_ours']:.2f}", f"{r['recrawl_speedup']:.1f}x"),
        ("", "recrawl", "bare 304s", "ours/bare"),
        (f"same {r['bare_revisit_pages']} conditional GETs, wall s", f"{r['recrawl_wall_s']:.2f}",
         f"{r['bare_revisit_wall_s']:.2f}", f"{r['recrawl_vs_bare_revisit']:.2f}"),
        ("  in-process s", f"{r['recrawl_inproc_s']:.2f}", f"{r['bare_revisit_inproc_s']:.2f}",
         f"{r['recrawl_inproc_s'] / r['bare_revisit_inproc_s']:.2f}"),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for k, row in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)))
        if k in (0, 3, 5):
            print("  ".join("-" * w for w in widths))
    m = r["machine"]
    print(f"\n{r['stored_ours']} pages stored; recrawl peak RSS {r['peak_rss_mib_recrawl']:.0f} MiB; "
          f"{m['cpus']} CPUs, 1-min load {m['loadavg_before'][0]:.2f} before, {m['loadavg_after'][0]:.2f} after; "
          f"figures in {os.path.relpath(OUT)}")


if __name__ == "__main__":
    main()
