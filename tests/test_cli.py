"""The CLI as a user runs it: a real subprocess per command."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fathom(*args, env=None):
    return subprocess.run([sys.executable, "-m", "fathom", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=300)


def test_help_lists_the_commands():
    out = fathom("--help")
    assert out.returncode == 0
    for cmd in ("crawl", "index", "search", "ask", "status", "demo"):
        assert cmd in out.stdout


def test_search_json_contract(built_engine):
    out = fathom("search", "turning the compost heap", "-k", "3", "--json", "--data", built_engine.data_dir)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["hits"][0]["url"].endswith("compost.html")
    assert {"url", "title", "score", "snippet"} <= set(data["hits"][0])


def test_status_json_shows_persisted_settings(built_engine):
    out = fathom("status", "--json", "--data", built_engine.data_dir)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    settings = data["index"]["settings"]
    assert settings["ef_construction"] == 200 and settings["compression_level"] == 4
    assert settings["embedder"] == "all-MiniLM-L6-v2-int8-160"
    assert data["crawl"]["pages"] == 4


def test_ask_json_contract_with_tiny_model(built_engine, tmp_path):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text('[answer]\nfast_model = "smollm2-135m"\nfast_max_tokens = 40\n')
    out = fathom("ask", "Why water early in the morning?", "--mode", "fast", "--json",
                 "--data", built_engine.data_dir, "--config", str(cfg))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert {"answer", "mode", "reason", "abstained", "citations", "timings"} <= set(data)
    for c in data["citations"]:
        assert {"n", "url", "title", "snippet"} <= set(c)


def test_missing_index_is_a_one_line_error(tmp_path):
    out = fathom("search", "x", "--data", str(tmp_path / "nothing"))
    assert out.returncode == 1
    assert out.stderr.strip().startswith("error: no index")
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_bad_config_is_a_one_line_error(tmp_path):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[index]\nbogus = 1\n")
    out = fathom("status", "--config", str(cfg), "--data", str(tmp_path))
    assert out.returncode == 1 and "bogus" in out.stderr and "Traceback" not in out.stderr


def test_eval_prints_metrics_per_engine(built_engine, tmp_path):
    qrels = tmp_path / "q.jsonl"
    qrels.write_text(json.dumps({"qid": "1", "query": "compost heap", "relevant": ["docs/compost.html"]}) + "\n")
    out = fathom("eval", str(qrels), "--engines", "bm25,hybrid,rerank", "--json", "--data", built_engine.data_dir)
    assert out.returncode == 0, out.stderr
    results = json.loads(out.stdout)["results"]
    assert [r["engines"] for r in results] == ["bm25", "hybrid", "rerank"]
    assert results[1]["ndcg_at_10"] == 1.0 and results[2]["ndcg_at_10"] == 1.0
    assert fathom("eval", str(qrels), "--engines", "magic", "--data", built_engine.data_dir).returncode == 2


def test_eval_per_site_table_in_one_command(built_engine, tmp_path):
    good, bad = tmp_path / "garden.jsonl", tmp_path / "wrong.jsonl"
    good.write_text(json.dumps({"qid": "1", "query": "compost heap", "relevant": ["docs/compost.html"]}) + "\n")
    bad.write_text(json.dumps({"qid": "1", "query": "compost heap", "relevant": ["docs/nowhere.html"]}) + "\n")
    d = built_engine.data_dir
    out = fathom("eval", "--site", d, str(good), "--site", d, str(bad), "--engines", "page,naive,hybrid")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].split() == ["nDCG@10", "garden", "wrong", "mean"]
    assert lines[1].split() == ["page", "1.000", "0.000", "0.500"]
    assert [ln.split()[0] for ln in lines[2:4]] == ["naive", "hybrid"] and "queries: garden 1, wrong 1" in out.stdout
    data = json.loads(fathom("eval", "--site", d, str(good), "--engines", "bm25", "--json").stdout)
    assert data["mean"]["bm25"]["ndcg_at_10"] == data["sites"][0]["results"]["bm25"]["ndcg_at_10"] == 1.0
    assert fathom("eval", "--data", d).returncode == 2  # neither a file nor --site
    assert fathom("eval", str(good), "--site", d, str(good)).returncode == 2


def test_search_explain_names_the_engines(built_engine):
    out = fathom("search", "compost heap", "-k", "2", "--explain", "--data", built_engine.data_dir)
    assert out.returncode == 0, out.stderr
    assert "explain: bm25 #" in out.stdout and "dense #" in out.stdout and "page #1" in out.stdout and "fused" in out.stdout
    assert "rerank #" not in out.stdout
    out = fathom("search", "compost heap", "-k", "2", "--explain", "--rerank", "--data", built_engine.data_dir)
    assert out.returncode == 0, out.stderr
    assert "rerank #1 (" in out.stdout


def test_status_reports_an_unusable_index_instead_of_failing(built_engine, tmp_path):
    import shutil

    from indexer.generations import current_generation

    data = tmp_path / "copy"
    shutil.copytree(built_engine.data_dir, data)
    manifest = os.path.join(current_generation(str(data / "index")), "manifest.json")
    with open(manifest, "w") as f:
        f.write("{broken")
    out = fathom("status", "--json", "--data", str(data))
    assert out.returncode == 0, out.stderr
    assert "corrupt manifest" in json.loads(out.stdout)["index"]["error"]
