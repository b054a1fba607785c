"""Shared fixtures: a small real site served over HTTP, and a crawled + indexed data dir."""
from __future__ import annotations

import os
import textwrap

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from fathom.localsite import serve_directory  # noqa: E402

PAGE = """<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body><nav class="navbar"><a href="index.html">Home</a> NAVIGATIONJUNK</nav>
<div role="main">{body}</div>
<footer class="footer">FOOTERJUNK copyright</footer></body></html>"""

SITE = {
    "docs/index.html": ("Garden Handbook", """<h1>Garden Handbook</h1>
        <p>Welcome to the handbook about growing vegetables.</p>
        <ul><li><a href="tomatoes.html">Tomatoes</a></li><li><a href="compost.html">Compost</a></li>
        <li><a href="watering.html">Watering</a></li><li><a href="../private/secret.html">Secret</a></li>
        <li><a href="missing.html">Missing</a></li><li><a href="seeds.bin">Seed data</a></li>
        <li><a href="http://example.invalid/elsewhere.html">Elsewhere</a></li></ul>"""),
    "docs/tomatoes.html": ("Growing Tomatoes", """<h1>Growing Tomatoes</h1>
        <h2>Planting</h2><p>Plant tomato seedlings deep, burying two thirds of the stem, because the
        buried stem grows extra roots. Space plants sixty centimetres apart.</p>
        <h2>Pruning</h2><p>Remove the side shoots, called suckers, that grow between the main stem and
        the leaf branches. Pruning suckers gives larger fruit.</p>
        <pre>def prune(plant):
    for shoot in plant.suckers:
        shoot.remove()</pre>"""),
    "docs/compost.html": ("Making Compost", """<h1>Making Compost</h1>
        <p>A compost heap needs a balance of green material rich in nitrogen and brown material rich in
        carbon. Turn the heap every two weeks so that air reaches the microbes.</p>
        <p>Finished compost is dark and crumbly and smells of forest soil after about three months.</p>"""),
    "docs/watering.html": ("Watering Vegetables", """<h1>Watering Vegetables</h1>
        <p>Water early in the morning so that leaves dry during the day, which prevents fungal disease.
        Deep watering twice a week beats a daily sprinkle because it trains roots to grow downward.</p>"""),
    "private/secret.html": ("Secret", "<h1>Secret</h1><p>The robots file forbids this page. ZEBRACODE</p>"),
}


def write_site(root: str) -> None:
    for rel, (title, body) in SITE.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(PAGE.format(title=title, body=textwrap.dedent(body)))
    with open(os.path.join(root, "robots.txt"), "w") as f:
        f.write("User-agent: *\nDisallow: /private/\n")
    with open(os.path.join(root, "docs", "seeds.bin"), "wb") as f:
        f.write(bytes(range(256)) * 4)


@pytest.fixture(scope="session")
def site_dir(tmp_path_factory) -> str:
    root = str(tmp_path_factory.mktemp("site"))
    write_site(root)
    return root


@pytest.fixture(scope="session")
def site_url(site_dir):
    with serve_directory(site_dir) as base:
        yield base


@pytest.fixture(scope="session")
def embedder():
    from indexer.embedding import load_embedder
    from indexer.config import IndexConfig
    return load_embedder(IndexConfig().embedder)


@pytest.fixture(scope="session")
def built_engine(tmp_path_factory, site_url, embedder):
    """An Engine whose data dir holds a crawl of the fixture site and a built index."""
    from fathom.engine import Engine

    engine = Engine(str(tmp_path_factory.mktemp("data")), embedder=embedder)
    report = engine.crawl([site_url + "docs/index.html"])
    assert report.new >= 4
    engine.index()
    return engine
