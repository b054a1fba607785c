"""Disk full, a read-only data directory and two writers, with real files and processes (slow tier)."""
from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
import time

import pytest

from core.errors import IndexLocked, StoreError, WriteError
from fathom.engine import Engine
from synthesizer.config import AnswerConfig
from indexer.generations import WriterLock, current_generation, generations
from tests.faults.faultkit import chain_site, fill, remount, star_site, tmpfs
from tests.test_crawl import serve, stored

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _fathom(data: str, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=ROOT, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    return subprocess.run([sys.executable, "-m", "fathom", "--data", data, *args], capture_output=True,
                          text=True, env=env, timeout=600)


def _one_clear_line(proc: subprocess.CompletedProcess, *words: str) -> str:
    """The command failed with exit 1 and one `error:` line naming `words`, no traceback."""
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")]
    assert len(lines) == 1, proc.stderr[-2000:]
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def test_disk_full_during_index_build_keeps_the_current_generation(built_engine):
    with tmpfs("16m") as data:
        shutil.copytree(built_engine.data_dir, data, dirs_exist_ok=True)
        root = os.path.join(data, "index")
        before = current_generation(root)
        filler = fill(data, 16 * 1024)
        eng = Engine(data, built_engine.config, embedder=built_engine.embedder)
        with pytest.raises(WriteError, match="No space left on device") as err:
            eng.index()
        assert "unchanged" in str(err.value)
        assert current_generation(root) == before  # no half generation made current
        assert not [n for n in os.listdir(root) if n.endswith(".tmp")]
        assert eng.search("compost heap turned").hits[0].url.endswith("compost.html")
        os.remove(filler)
        report = eng.index()  # succeeds once space is freed
        assert current_generation(root) != before and report.chunks == eng.open_index().manifest.chunks


def test_disk_full_during_crawl_keeps_stored_pages_and_resumes_after_space_is_freed(tmp_path):
    with serve(star_site("small", 4, 100)) as (small, _), serve(star_site("big", 40, 3000)) as (big, _log), \
            tmpfs("24m") as data:
        db = os.path.join(data, "crawl.duckdb")
        eng = Engine(data)
        first = eng.crawl([small + "small/index.html"])  # a store with some pages
        kept = set(stored(db))
        assert len(kept) == first.pages_total == 5
        filler = fill(data, 48 * 1024)  # DuckDB writes in 256 KiB blocks: a later write fails
        failed = _fathom(data, "crawl", big + "big/index.html")
        line = _one_clear_line(failed, "No space left on device")
        assert "free space" in line
        assert kept <= set(stored(db))  # the store opens and lost nothing that was stored
        os.remove(filler)
        report = eng.crawl([big + "big/index.html"])
        assert set(stored(db)) >= kept and report.pages_total == 5 + 41


def test_read_only_data_dir_serves_search_and_ask_but_refuses_writes(built_engine):
    with tmpfs("16m") as data:
        shutil.copytree(built_engine.data_dir, data, dirs_exist_ok=True)
        remount(data, "ro")
        try:
            found = _fathom(data, "search", "compost heap turned", "--json", "--no-rerank")
            assert found.returncode == 0, found.stderr[-2000:]
            assert "compost.html" in found.stdout
            cfg = built_engine.config
            eng = Engine(data, cfg, embedder=built_engine.embedder)
            assert eng.search("compost heap turned").hits[0].url.endswith("compost.html")
            tiny = AnswerConfig(fast_model="smollm2-135m", slow_model="smollm2-135m", fast_max_tokens=32)
            asker = Engine(data, dataclasses.replace(cfg, answer=tiny), embedder=built_engine.embedder)
            ans = asker.ask("How often should the compost heap be turned?", mode="fast")
            assert ans.citations and ans.citations[0].url.endswith("compost.html")
            st = eng.status()
            assert st.crawl.pages == 4 and not st.index.error
            _one_clear_line(_fathom(data, "index"), "Read-only file system")
            _one_clear_line(_fathom(data, "crawl", "/nonexistent-but-checked-later"), "does not exist")
            _one_clear_line(_fathom(data, "crawl", os.path.join(ROOT, "tests")), "Read-only file system")
        finally:
            remount(data, "rw")


def test_index_while_a_crawl_writes_is_refused_with_the_holders_pid(tmp_path, built_engine):
    data = str(tmp_path / "data")
    shutil.copytree(built_engine.data_dir, data)
    with serve(chain_site(18, 0.5)) as (base, log):
        env = dict(os.environ, PYTHONPATH=ROOT, HF_HUB_OFFLINE="1")
        crawler = subprocess.Popen([sys.executable, "-m", "fathom", "--data", data, "crawl", base + "docs/index.html"],
                                   env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            # index only once the crawl has opened its store and fetches (on a busy machine an index
            # run started first would hold the store and refuse the crawl instead)
            while not log and crawler.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)
            eng = Engine(data, built_engine.config, embedder=built_engine.embedder)
            refused = None
            while time.monotonic() < deadline and crawler.poll() is None:
                try:
                    eng.index()
                except StoreError as exc:
                    refused = str(exc)
                    break
                time.sleep(0.3)
            if not refused:  # say why: the crawl's own output
                crawler.kill()
                out, err = crawler.communicate(timeout=60)
                pytest.fail(f"index was never refused; crawl exit {crawler.returncode}: {out[-1500:]} {err[-1500:]}")
            assert "PID" in refused.upper(), refused  # DuckDB names the lock holder
            second = _fathom(data, "crawl", base + "docs/index.html")  # a second crawl is refused too
            _one_clear_line(second, "crawl store")
        finally:
            out, err = crawler.communicate(timeout=300)
        assert crawler.returncode == 0, err[-2000:]
    report = Engine(data, built_engine.config, embedder=built_engine.embedder).index()  # nothing corrupted
    assert report.pages == 4 + 19
    # two index builds: the second is refused naming the first's pid (see test_index_crash for a real
    # second process); the lock file names this process here
    root = os.path.join(data, "index")
    with WriterLock(root):
        with pytest.raises(IndexLocked, match=f"pid {os.getpid()}"):
            Engine(data, built_engine.config, embedder=built_engine.embedder).index()
    assert len(generations(root)) >= 1
