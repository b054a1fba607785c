"""A crawl killed with SIGKILL resumes from its frontier on the next run."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

from crawler.config import CrawlConfig
from crawler.run import crawl
from tests.test_crawl import html, query, requested, serve, stored

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = 12
SLOW_FROM = 5  # pages p5 … p12 take a while, so the crawl is still running when killed


def chain_site() -> dict:
    """index -> p1 -> p2 -> … -> p12: each page is discovered only once the previous one is parsed."""
    def page(i):
        body = html(f"Chain page {i}", links=[f"p{i + 1}.html"] if i < PAGES else [])

        def handler(h):
            if i >= SLOW_FROM:
                time.sleep(0.4)
            h.reply(200, {"Content-Type": "text/html"}, body)
        return handler

    return {"/docs/index.html": html("Chain index", links=["p1.html"]),
            **{f"/docs/p{i}.html": page(i) for i in range(1, PAGES + 1)}}


def test_killed_crawl_resumes_without_refetching_finished_pages(tmp_path):
    db = str(tmp_path / "store" / "crawl.duckdb")
    config = CrawlConfig()
    with serve(chain_site()) as (base, log):
        seeds = [base + "docs/index.html"]
        child = subprocess.Popen([sys.executable, "-m", "crawler.run"], cwd=ROOT, stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
        child.stdin.write(json.dumps({"seeds": seeds, "store": db, "config": dataclasses.asdict(config)}))
        child.stdin.close()
        deadline = time.monotonic() + 60
        while requested(log, "/docs/p7.html") == 0 and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)  # mid-crawl: p7 is being fetched, p8 … p12 are unknown yet
        child.wait()
        assert child.returncode == -signal.SIGKILL

        finished = {u for (u,) in query(db, "SELECT url FROM fetch_log WHERE run_id = 1")}
        kept = set(stored(db))
        assert {base + "docs/index.html"} | {f"{base}docs/p{i}.html" for i in range(1, 6)} <= finished
        assert kept and kept <= finished and base + "docs/p12.html" not in finished

        report = crawl(seeds, config, db)

    refetched = {u for (u,) in query(db, "SELECT url FROM fetch_log WHERE run_id = 2")}
    assert not refetched & finished
    assert all(requested(log, u[len(base) - 1:]) == 1 for u in finished)  # the server saw each only once
    pages = stored(db)
    assert kept <= set(pages) and len(pages) == PAGES + 1
    assert report.new == PAGES + 1 - len(kept) and report.errors == 0
    assert query(db, "SELECT count(*) FROM frontier") == [(0,)]  # a finished job leaves no frontier
