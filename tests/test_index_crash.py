"""Crash safety: a real `build_index` process killed with SIGKILL mid-build leaves the previous
generation answering, and the next build recovers. A paused writer also refuses a second one."""
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from core.errors import IndexLocked
from indexer.build import build_index
from indexer.config import IndexConfig
from indexer.generations import current_generation
from indexer.hybrid_index import HybridIndex

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Runs a real build in a child process; the named step of indexer.build is wrapped so that the
# child writes a marker file and sleeps at that point, where the test kills it with SIGKILL.
DRIVER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, sys.argv[1])
    import indexer.build as b
    from indexer.config import IndexConfig
    from indexer.embedding import load_embedder
    store, root, step, when, marker = sys.argv[2:]
    real = getattr(b, step)
    def paused(*args, **kwargs):
        if when == "after":
            real(*args, **kwargs)
        open(marker, "w").close()
        time.sleep(600)
    setattr(b, step, paused)
    b.build_index(store, root, IndexConfig(), load_embedder("all-MiniLM-L6-v2"), progress=lambda *a: None)
""")


def _start_paused_build(store: str, root: str, step: str, when: str, marker: str) -> subprocess.Popen:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-c", DRIVER, REPO, store, root, step, when, marker],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not os.path.exists(marker):
        if proc.poll() is not None:
            raise AssertionError(f"build process exited early: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("build process never reached the pause point")
        time.sleep(0.1)
    return proc


@pytest.mark.parametrize("step,when,leftover", [
    ("write_lexical", "after", ".tmp"),     # tantivy written into gen-N.tmp, nothing else yet
    ("save_hnsw", "after", ".tmp"),         # tantivy and the HNSW files written, no manifest
    ("switch_current", "before", ""),       # gen-N complete and renamed, CURRENT not switched
])
def test_sigkill_mid_build_leaves_old_generation_answering_and_next_build_recovers(
        built_engine, embedder, tmp_path, step, when, leftover):
    root = str(tmp_path / "index")
    shutil.copytree(built_engine.index_root, root)
    before = current_generation(root)
    marker = str(tmp_path / "paused")
    proc = _start_paused_build(built_engine.store_path, root, step, when, marker)
    try:
        # a second writer is refused while the first holds the lock, naming the holder
        with pytest.raises(IndexLocked, match=f"pid {proc.pid}"):
            build_index(built_engine.store_path, root, IndexConfig(), embedder)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    partial = [n for n in os.listdir(root) if n.startswith("gen-") and n.endswith(".tmp")]
    assert bool(partial) == (leftover == ".tmp")  # the kill really landed mid-build

    old = HybridIndex.open(root)
    assert old.directory == before
    hits = old.lexical.search("compost heap nitrogen", 3)
    assert hits and old.chunks[hits[0][0]].url.endswith("compost.html")

    report = build_index(built_engine.store_path, root, IndexConfig(), embedder)  # lock not wedged
    assert not [n for n in os.listdir(root) if n.endswith(".tmp")]  # stale partial cleaned
    new = HybridIndex.open(root)
    assert new.directory != before and new.manifest.generation == report.generation
    assert new.manifest.chunks == old.manifest.chunks == new.lexical.num_docs == new.dense.get_current_count()
    labels, _ = new.dense.knn_query(embedder.embed_query("remove tomato suckers to get larger fruit"), k=1)
    assert new.chunks[int(labels[0][0])].url.endswith("tomatoes.html")
