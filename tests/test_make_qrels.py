"""benchmarks/make_qrels.py: qrels from a Sphinx genindex."""
from __future__ import annotations

import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

GENINDEX = """<html><body><table class="indextable genindextable"><tr><td><ul>
<li><a href="api.html#Spider.add_css">add_css() (scrapy.loader.ItemLoader method)</a>
  <ul><li><a href="loaders.html#x">(scrapy.loader.Other method)</a></li></ul></li>
<li>AJAXCRAWL_ENABLED
  <ul><li><a href="settings.html#std-setting-AJAXCRAWL_ENABLED">setting</a></li></ul></li>
<li>setting
  <ul><li><a href="settings.html#std-setting-AJAXCRAWL_ENABLED">AJAXCRAWL_ENABLED</a></li></ul></li>
<li><a href="gone.html#a">vanished</a></li>
<li><a href="genindex.html">index itself</a></li>
<li><a href="https://example.org/x.html">elsewhere</a></li>
</ul></td></tr></table></body></html>"""


def test_generator_derives_queries_from_the_index(tmp_path):
    site = tmp_path / "html"
    site.mkdir()
    (site / "genindex.html").write_text(GENINDEX)
    for page in ("api.html", "loaders.html", "settings.html"):
        (site / page).write_text("<html></html>")
    out = tmp_path / "q.jsonl"
    run = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "make_qrels.py"), str(site),
                          "--site", "t", "-o", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    by_query = {r["query"]: sorted(r["relevant"]) for r in rows}
    # qualifiers dropped and same-named objects merged; a "pair" entry counted once; missing,
    # self and off-site links left out
    assert by_query == {"add_css": ["api.html", "loaders.html"], "AJAXCRAWL_ENABLED setting": ["settings.html"]}
    assert sorted(r["qid"] for r in rows) == ["t-1", "t-2"]


def test_generator_says_what_to_install(tmp_path):
    run = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "make_qrels.py"), str(tmp_path),
                          "--site", "t", "-o", str(tmp_path / "q.jsonl")], capture_output=True, text=True)
    assert run.returncode == 1 and "no index entries" in run.stderr


def test_generator_reads_texinfo_index_pages(tmp_path):
    site = tmp_path / "m4"
    site.mkdir()
    (site / "Concept-index.html").write_text(
        '<table class="index-cp"><tr><td></td><td><a href="Shift.html#index-x">arguments, joining</a>:</td>'
        '<td></td><td><a href="Shift.html">Shift</a></td></tr>'
        '<tr><th>B</th></tr></table>')
    (site / "Shift.html").write_text("<html></html>")
    out = tmp_path / "q.jsonl"
    run = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "make_qrels.py"), str(site),
                          "--site", "m4", "-o", str(out)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert [json.loads(line) for line in out.read_text().splitlines()] == [
        {"qid": "m4-1", "query": "arguments joining", "relevant": ["Shift.html"]}]
