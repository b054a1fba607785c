"""Several crawler processes share one crawl through a real Redis (scrapy-redis frontier)."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from core.errors import ConfigError, CrawlError
from crawler.config import CrawlConfig
from crawler.simhash import distance, simhash
from crawler.spider import FLUSH_AFTER_S
from crawler.store import CrawlStore
from tests.redis_server import free_port, redis_server
from tests.scale_site import scale_site, serve_site

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def start_worker(seeds, config, store) -> subprocess.Popen:
    """One `fathom crawl` child process (what crawler.run.crawl runs), left running."""
    proc = subprocess.Popen([sys.executable, "-m", "crawler.run"], cwd=ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": ROOT})
    proc.stdin.write(json.dumps({"seeds": seeds, "store": store, "config": dataclasses.asdict(config)}))
    proc.stdin.close()
    return proc


def finish(proc: subprocess.Popen, timeout: float = 300) -> dict:
    out = proc.stdout.read()
    err = proc.stderr.read()
    proc.wait(timeout)
    assert proc.returncode == 0, err[-2000:]
    return json.loads([ln for ln in out.splitlines() if ln.startswith("{")][-1])


def pages(store) -> dict:
    with CrawlStore(store, read_only=True) as s:
        return {p.url: p for p in s.pages()}


def start_pair(seeds, config, stores) -> tuple[subprocess.Popen, subprocess.Popen]:
    """Two crawler processes on one frontier, each writing its own store."""
    return start_worker(seeds, config, stores[0]), start_worker(seeds, config, stores[1])


def kill_when(proc: subprocess.Popen, server, fetched: int, timeout: float = 120) -> None:
    """SIGKILL `proc` once the server has answered `fetched` requests (or after `timeout` s)."""
    deadline = time.monotonic() + timeout
    while sum(server.hits.values()) < fetched and time.monotonic() < deadline:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


@pytest.fixture()
def stores(tmp_path) -> tuple[str, str]:
    """The stores of the two crawler processes a and b."""
    return str(tmp_path / "a.duckdb"), str(tmp_path / "b.duckdb")


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as url:
        yield url


@pytest.fixture(scope="module")
def site():
    routes, expected = scale_site()
    return routes, expected


def test_fixture_near_copies_are_near_duplicates(site):
    from crawler.extract import extract_html
    routes, expected = site
    assert expected >= 300
    for s in range(5):
        a = extract_html(routes[f"/site/p{s}_0.html"].decode(), "http://x/site/p.html").text
        b = extract_html(routes[f"/site/near{s}.html"].decode(), "http://x/site/near.html").text
        assert a != b and distance(simhash(a), simhash(b)) <= CrawlConfig().near_duplicate_bits


def test_bad_frontier_url_is_a_clear_error(tmp_path):
    from fathom.engine import Engine
    with pytest.raises(ConfigError, match="frontier must be a redis://"):
        Engine(str(tmp_path)).crawl(["http://127.0.0.1:9/"], frontier="http://127.0.0.1:6379")
    with pytest.raises(CrawlError, match="cannot reach Redis"):
        Engine(str(tmp_path)).crawl(["http://127.0.0.1:9/"], frontier=f"redis://127.0.0.1:{free_port()}/0")


def test_a_request_taken_by_a_worker_killed_before_recording_it_is_not_lost(redis_url):
    """The queue steps are atomic: seen-set and queue change together, and a request taken from
    the queue is recorded for its worker in the same step, so a kill between any two Redis calls
    leaves it where a survivor finds it."""
    from crawler.distributed import SharedCrawl
    job = f"atomic{free_port()}"
    a = SharedCrawl(redis_url, job, "host:a", near_bits=3, heartbeat_ttl_s=0.3)
    b = SharedCrawl(redis_url, job, "host:b", near_bits=3, heartbeat_ttl_s=30)
    try:
        a.beat(), b.beat()
        assert a.enqueue("fp1", 0, b"request-1") and a.enqueue("fp2", 0, b"request-2")
        assert not b.enqueue("fp1", 0, b"request-1 again")  # seen: not queued
        assert b.enqueue("", 0, b"request-1 unfiltered")
        assert b.r.zcard(b.p + "requests") == 3
        assert a.pop() == b"request-1"  # a takes it ... and is killed before it records it
        a.took("http://x/2", 1, a.pop())  # this one it recorded as in flight
        assert b.busy() and b.reclaim(include_own=False) == []  # a is alive: its requests are its own
        time.sleep(0.5)  # a's heartbeat expires
        again = b.reclaim(include_own=False)
        assert again == [("http://x/2", 1)]  # to be requested again by b
        assert sorted(b.r.zrange(b.p + "requests", 0, -1)) == [b"request-1", b"request-2"]
        assert b.r.hlen(b.p + "taken") == 0 and b.r.hlen(b.p + "inflight") == 0
        assert b.pop() is not None and b.pop() is not None and b.pop() is None
        assert b.busy()  # b's own taken requests are not recorded as in flight yet
        b.finish()
        assert not b.busy()
    finally:
        b.finish()


@pytest.mark.slow
def test_two_processes_share_the_crawl_and_store_each_page_once(redis_url, site, stores, tmp_path):
    routes, expected = site
    config = CrawlConfig(concurrency=4, concurrency_per_host=3, frontier=redis_url)
    with serve_site(routes, latency_s=0.02) as (base, server):
        seeds = [base + "site/index.html"]
        single = start_worker(seeds, dataclasses.replace(config, frontier=""), str(tmp_path / "single.duckdb"))
        single_report = finish(single)
        server.hits.clear()
        server.max_active = 0
        a, b = start_pair(seeds, config, stores)
        ra, rb = finish(a), finish(b)
        hits = dict(server.hits)
        max_active = server.max_active
    one = pages(str(tmp_path / "single.duckdb"))
    pa, pb = map(pages, stores)
    assert len(one) == expected and single_report["new"] == expected
    # both processes did real work, and together they stored what one process stores, each page once
    assert ra["new"] > 20 and rb["new"] > 20
    assert not set(pa) & set(pb)
    assert len(pa) + len(pb) == len(one)
    assert len({p.content_hash for p in [*pa.values(), *pb.values()]}) == len(one)
    # every page was fetched exactly once across both processes; robots.txt was obeyed by both
    html_hits = {p: n for p, n in hits.items() if p.endswith(".html")}
    assert set(html_hits) == {p for p in routes if p.startswith("/site/")}
    assert all(n == 1 for n in html_hits.values()), {p: n for p, n in html_hits.items() if n != 1}
    assert "/private/secret.html" not in hits
    # duplicates were collapsed across processes: 5 exact and 5 near copies, whoever fetched them
    skipped = [ra["skipped"], rb["skipped"]]
    assert sum(s.get("duplicate", 0) for s in skipped) == 5
    assert sum(s.get("near_duplicate", 0) for s in skipped) == 5
    # politeness held across processes: never more requests in flight than concurrency_per_host
    assert 1 < max_active <= config.concurrency_per_host


@pytest.mark.slow
def test_killed_process_resumes_and_the_other_finishes(redis_url, site, stores):
    routes, expected = site
    config = CrawlConfig(concurrency=4, concurrency_per_host=4, frontier=redis_url)
    with serve_site(routes, latency_s=0.05) as (base, server):
        seeds = [base + "site/index.html"]
        a, b = start_pair(seeds, config, stores)
        kill_when(a, server, expected // 2)  # halfway: a has requests in flight that it never stored
        assert a.returncode == -signal.SIGKILL and b.poll() is None
        a = start_worker(seeds, config, stores[0])  # the same store: the same worker, which resumes
        ra, rb = finish(a), finish(b)
        hits = dict(server.hits)
    pa, pb = map(pages, stores)
    assert not set(pa) & set(pb)
    assert len(pa) + len(pb) == expected
    assert ra["new"] + rb["new"] > 0 and len(pa) > 20
    site_pages = {p for p in routes if p.startswith("/site/")}
    assert set(p for p in hits if p.endswith(".html")) == site_pages  # nothing was lost with the kill
    # only what the killed process had taken but not committed is fetched again: requests in flight
    # and responses of the last FLUSH_AFTER_S (a store write batch), once each
    again = {p: n for p, n in hits.items() if p in site_pages and n > 1}
    assert all(n == 2 for n in again.values()), again
    assert len(again) <= config.concurrency * (1 + FLUSH_AFTER_S / 0.05), again


@pytest.mark.slow
def test_survivor_takes_over_a_dead_workers_requests(redis_url, site, stores):
    routes, expected = site
    config = CrawlConfig(concurrency=4, concurrency_per_host=4, frontier=redis_url)
    with serve_site(routes, latency_s=0.05) as (base, server):
        seeds = [base + "site/index.html"]
        a, b = start_pair(seeds, config, stores)
        kill_when(a, server, expected // 3)  # never restarted
        rb = finish(b)
    pa, pb = map(pages, stores)
    assert rb["new"] == len(pb)
    assert not set(pa) & set(pb) and len(pa) + len(pb) == expected


@pytest.mark.slow
def test_crawl_delay_holds_across_processes(redis_url, stores):
    import itertools
    routes, expected = scale_site(sections=2, per_section=4, duplicates=0, crawl_delay_s=0.4)
    config = CrawlConfig(concurrency=4, concurrency_per_host=4, frontier=redis_url)
    with serve_site(routes, latency_s=0.0) as (base, server):
        seeds = [base + "site/index.html"]
        a, b = start_pair(seeds, config, stores)
        ra, rb = finish(a), finish(b)
        times = sorted(t for p, t in server.log if p.startswith("/site/"))
    assert ra["new"] + rb["new"] == expected
    gaps = [y - x for x, y in itertools.pairwise(times)]
    assert len(gaps) == expected - 1 and min(gaps) >= 0.35  # one request per 0.4 s from both processes together


def test_frontier_is_a_crawl_config_key(tmp_path):
    from fathom.config import load_config
    good = tmp_path / "good.toml"
    good.write_text('[crawl]\nfrontier = "redis://10.0.0.5:6379/2"\n')
    assert load_config(str(good)).crawl.frontier == "redis://10.0.0.5:6379/2"
    bad = tmp_path / "bad.toml"
    bad.write_text('[crawl]\nfrontier = "10.0.0.5:6379"\n')
    with pytest.raises(ConfigError, match="frontier must be a redis://"):
        load_config(str(bad))
    # the processes pace each host together in Redis; AutoThrottle would pace each one on its own
    throttled = tmp_path / "throttled.toml"
    throttled.write_text('[crawl]\nfrontier = "redis://10.0.0.5:6379/2"\nautothrottle = true\n')
    with pytest.raises(ConfigError, match="autothrottle cannot be used with a shared frontier"):
        load_config(str(throttled))
    from crawler.distributed import frontier_settings
    assert frontier_settings("redis://10.0.0.5:6379/2", "job")["AUTOTHROTTLE_ENABLED"] is False
