"""Slow tier: the real answer models end to end (run with -m slow)."""
import json
import os
import subprocess
import sys

import pytest

from fathom.demo import PYTHON_DOCS

pytestmark = pytest.mark.slow
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize("mode", ["fast", "slow"])
def test_real_model_answer_cites_the_page_holding_the_answer(built_engine, mode):
    ans = built_engine.ask("How often should the compost heap be turned?", mode=mode)
    assert not ans.abstained, ans
    assert ans.mode == mode
    assert any(c.url.endswith("compost.html") for c in ans.citations)
    assert "[1]" in ans.answer


def test_real_model_abstains_on_an_unanswerable_question(built_engine):
    ans = built_engine.ask("Which PostgreSQL setting controls autovacuum for large tables?", mode="slow")
    assert ans.abstained


@pytest.mark.skipif(not os.path.isdir(PYTHON_DOCS), reason="python3.11-doc not installed")
def test_readme_demo_command_prints_a_cited_answer(tmp_path):
    """README command 1's job (`fathom demo`) on the real Python docs."""
    out = subprocess.run([sys.executable, "-m", "fathom", "demo", "--json", "--data", str(tmp_path / "d")],
                         capture_output=True, text=True, cwd=ROOT, timeout=900)
    assert out.returncode == 0, out.stderr[-2000:]
    data = json.loads(out.stdout)
    assert data["crawl"]["new"] >= 20 and data["index"]["chunks"] > 100
    answer = data["answer"]
    assert not answer["abstained"], answer
    assert any("/faq/" in c["url"] or "/tutorial/" in c["url"] for c in answer["citations"])
    # readable: whole code or none, no marker in code, a finished last sentence, one number per section
    from synthesizer.shaping import broken_code
    assert not broken_code(answer["answer"]), answer["answer"]
    sections = [(c["url"], c["heading"]) for c in answer["citations"]]
    assert len(sections) == len(set(sections))
