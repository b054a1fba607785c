"""kill -9 at seeded random moments of a crawl and of an index build (slow tier).

After each kill: the store opens and keeps every page stored before, the index opens at a
complete generation that answers, and the next run resumes (crawl) or builds (index)."""
from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from crawler.config import CrawlConfig
from crawler.run import crawl
from indexer.build import build_index
from indexer.config import IndexConfig
from indexer.generations import current_generation, generations
from indexer.hybrid_index import HybridIndex
from tests.faults.faultkit import chain_site
from tests.test_crawl import query, serve, stored

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRIALS = 20
PAGES = 10


def _start_crawl(seeds: list[str], db: str) -> subprocess.Popen:
    child = subprocess.Popen([sys.executable, "-m", "crawler.run"], cwd=ROOT, stdin=subprocess.PIPE,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    child.stdin.write(json.dumps({"seeds": seeds, "store": db, "config": dataclasses.asdict(CrawlConfig())}))
    child.stdin.close()
    return child


def test_crawl_survives_sigkill_at_random_moments(tmp_path):
    rng = random.Random(1313)
    landed = completed = 0
    with serve(chain_site(PAGES, 0.12)) as (base, _log):
        seeds = [base + "docs/index.html"]
        everything = {base + "docs/index.html"} | {f"{base}docs/p{i}.html" for i in range(1, PAGES + 1)}
        chain, before = 0, set()
        db = str(tmp_path / f"store{chain}" / "crawl.duckdb")
        for _trial in range(TRIALS):
            child = _start_crawl(seeds, db)
            time.sleep(rng.uniform(0.2, 4.0))
            if child.poll() is None:
                child.send_signal(signal.SIGKILL)
                landed += 1
            child.wait()
            if not os.path.exists(db):
                continue  # killed before the store was created: nothing was stored
            pages = stored(db)  # the store opens after every kill
            assert before <= set(pages), "a page stored before the kill is gone"
            assert set(pages) <= everything
            for url, page in pages.items():  # each kept page is whole: its own title and text
                name = "Chain index" if url.endswith("index.html") else f"Chain page {url.rsplit('p', 1)[1][:-5]}"
                assert page.title == name and page.text
            logged = {u for (u,) in query(db, "SELECT DISTINCT url FROM fetch_log")}
            assert set(pages) <= logged  # a page and its fetch-log line commit together
            before = set(pages)
            if child.returncode == 0:  # the crawl finished before the kill: start a fresh store
                assert before == everything
                completed += 1
                chain, before = chain + 1, set()
                db = str(tmp_path / f"store{chain}" / "crawl.duckdb")
        report = crawl(seeds, CrawlConfig(), db)  # the last store resumes and completes
        assert set(stored(db)) == everything and report.errors == 0
        assert query(db, "SELECT count(*) FROM frontier") == [(0,)]
    print(f"crawl kill trials: {TRIALS}, killed mid-crawl {landed}, finished before the kill {completed}")
    assert landed >= TRIALS // 2  # most kills really landed mid-crawl


def _forked_build(store: str, root: str, embedder) -> int:
    """Run build_index in a forked child (the embedder is already loaded here); returns its pid."""
    pid = os.fork()
    if pid == 0:  # child
        code = 1
        try:
            build_index(store, root, IndexConfig(), embedder, progress=lambda *a: None)
            code = 0
        finally:
            os._exit(code)
    return pid


def test_index_build_survives_sigkill_at_random_moments(built_engine, embedder, tmp_path, monkeypatch):
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    data = tmp_path / "data"
    shutil.copytree(built_engine.data_dir, data)
    store, root = str(data / "crawl.duckdb"), str(data / "index")
    t = time.monotonic()
    pid = _forked_build(store, root, embedder)
    assert os.waitpid(pid, 0)[1] == 0
    duration = time.monotonic() - t
    rng = random.Random(1314)
    landed = 0
    last = current_generation(root)
    for _trial in range(TRIALS):
        pid = _forked_build(store, root, embedder)
        # within the first 80% of a clean build's time: the load on a shared machine changes,
        # and kills after a build ends test nothing
        time.sleep(rng.uniform(0, duration * 0.8))
        finished = os.waitpid(pid, os.WNOHANG)[0] != 0
        if not finished:
            os.kill(pid, signal.SIGKILL)
            landed += 1
            os.waitpid(pid, 0)
        idx = HybridIndex.open(root, fallback=False)  # CURRENT names a complete, loadable generation
        assert idx.directory >= last
        last = idx.directory
        hits = idx.lexical.search("compost heap nitrogen", 3)
        assert hits and idx.chunks[hits[0][0]].url.endswith("compost.html")
        assert idx.manifest.chunks == idx.lexical.num_docs == idx.dense.get_current_count() == len(idx.chunks)
    report = build_index(store, root, IndexConfig(), embedder)  # the lock is not wedged
    assert not [n for n in os.listdir(root) if n.endswith(".tmp")]
    assert len(generations(root)) <= IndexConfig().keep_generations
    assert HybridIndex.open(root, verify="full").manifest.generation == report.generation
    print(f"index kill trials: {TRIALS}, killed mid-build {landed} (a clean build took {duration:.2f}s)")
    assert landed >= TRIALS // 2
