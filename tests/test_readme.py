"""The README's Python example, executed as written (slow: it answers with Qwen 0.5B)."""
from __future__ import annotations

import os
import re

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_example() -> str:
    text = open(os.path.join(REPO, "README.md"), encoding="utf-8").read()
    m = re.search(r"<!-- tests/test_readme.py runs this block as written -->\n```python\n(.*?)```", text, re.S)
    assert m, "the tested Python block is missing from README.md"
    return m.group(1)


def test_readme_has_the_tested_example():
    code = readme_example()
    compile(code, "README.md", "exec")
    assert "from fathom import Engine" in code


@pytest.mark.slow
def test_readme_python_example_runs_as_written(tmp_path, monkeypatch, capsys):
    if not os.path.isdir("/usr/share/doc/python3.11/html/faq"):
        pytest.fail("python3.11-doc is missing (scripts/setup.sh installs it)")
    monkeypatch.chdir(tmp_path)
    exec(compile(readme_example(), "README.md", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert re.search(r"\d+ chunks", out)
    assert "faq/programming.html" in out  # the default-values FAQ is found
    assert (tmp_path / "fathom-data" / "crawl.duckdb").exists()
