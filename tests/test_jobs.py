"""`fathom run JOBS.toml`: crawl + incremental index per source, --due, the lock, exit codes."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from core.errors import ConfigError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def fathom(*args, cwd=None):
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-m", "fathom", *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=600)


def write(path, text: str) -> str:
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("text, message", [
    ('[[source]]\nname = "a"\n', "seeds"),
    ('[[source]]\nseeds = ["x"]\n', "name"),
    ('[[source]]\nname = "a"\nseeds = ["x"]\nevery = "soon"\n', "interval"),
    ('[[source]]\nname = "a"\nseeds = ["x"]\nmax_pagez = 3\n', "max_pagez"),
    ('[[source]]\nname = "a"\nseeds = ["x"]\nmax_pages = "ten"\n', "max_pages"),
    ('[[source]]\nname = "a"\nseeds = ["x"]\n[[source]]\nname = "a"\nseeds = ["y"]\n', "two sources"),
    ('[jobs]\nx = 1\n', "unknown key"),
    ('', "no [[source]]"),
    ('[[source]\n', "not valid TOML"),
])
def test_bad_jobs_file_is_a_config_error_naming_the_problem(tmp_path, text, message):
    from fathom.jobs import load_jobs

    with pytest.raises(ConfigError, match=message.replace("[", r"\[")):
        load_jobs(write(tmp_path / "jobs.toml", text))


def test_intervals_parse():
    from fathom.jobs import parse_interval

    assert parse_interval("24h", "x") == 86400
    assert parse_interval("1h30m", "x") == 5400
    assert parse_interval("7d", "x") == 7 * 86400


def test_run_crawls_indexes_then_due_skips_until_the_interval_passes(tmp_path, site_url):
    jobs = write(tmp_path / "jobs.toml", f"""
[[source]]
name = "garden"
seeds = ["{site_url}docs/index.html"]
every = "24h"
max_pages = 20
exclude = ["compost"]
""")
    data = str(tmp_path / "data")
    out = fathom("run", jobs, "--json", "--data", data)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    src = report["sources"][0]
    assert src["name"] == "garden" and src["status"] == "ok" and src["new"] >= 3
    assert report["index"]["pages"] == src["pages_total"] and report["index"]["chunks"] > 0
    assert "━" not in out.stderr and "\r" not in out.stderr  # no progress bars when stderr is not a TTY
    search = fathom("search", "compost heap", "--json", "--data", data)
    assert all("compost" not in h["url"] for h in json.loads(search.stdout)["hits"])  # exclude applied

    again = fathom("run", jobs, "--due", "--data", data)
    assert again.returncode == 0, again.stderr
    assert "garden: not_due" in again.stdout and "0 ok, 0 failed, 1 not due" in again.stdout

    # without --due every source runs; an unchanged site is fetched again and nothing re-embedded
    forced = json.loads(fathom("run", jobs, "--json", "--data", data).stdout)
    assert forced["sources"][0]["status"] == "ok" and forced["index"]["embedded"] == 0


def test_a_failing_source_is_a_partial_failure_and_the_others_still_run(tmp_path, site_dir):
    jobs = write(tmp_path / "jobs.toml", f"""
[[source]]
name = "broken"
seeds = ["{tmp_path}/does-not-exist"]

[[source]]
name = "garden"
seeds = ["{site_dir}/docs"]
max_pages = 10
""")
    out = fathom("run", jobs, "--data", str(tmp_path / "data"))
    assert out.returncode == 3, out.stdout + out.stderr
    assert "broken: failed:" in out.stdout and "does not exist" in out.stdout
    assert "garden: ok" in out.stdout and "1 ok, 1 failed" in out.stdout


def test_all_sources_failing_is_exit_1(tmp_path):
    jobs = write(tmp_path / "jobs.toml", f'[[source]]\nname = "x"\nseeds = ["{tmp_path}/nope"]\n')
    out = fathom("run", jobs, "--data", str(tmp_path / "data"))
    assert out.returncode == 1 and "x: failed" in out.stdout


def test_a_second_run_while_one_holds_the_lock_exits_75(tmp_path, site_dir):
    from filelock import FileLock

    data = tmp_path / "data"
    data.mkdir()
    jobs = write(tmp_path / "jobs.toml", f'[[source]]\nname = "g"\nseeds = ["{site_dir}/docs"]\n')
    with FileLock(str(data / "jobs.lock")):
        out = fathom("run", jobs, "--data", str(data))
    assert out.returncode == 75
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "another `fathom run`" in lines[0]
    assert not (data / "crawl.duckdb").exists()  # it did nothing


def test_bad_jobs_file_exits_1_with_one_line(tmp_path):
    out = fathom("run", write(tmp_path / "jobs.toml", '[[source]]\nname = "a"\n'), "--data", str(tmp_path / "d"))
    assert out.returncode == 1 and out.stderr.strip().count("\n") == 0 and "seeds" in out.stderr


def test_due_uses_the_last_success_recorded_in_the_store(tmp_path, site_dir, embedder):
    import datetime as dt

    from fathom import Engine
    from fathom.jobs import Source, run_jobs

    engine = Engine(str(tmp_path / "data"), embedder=embedder)
    src = Source("g", (f"{site_dir}/docs",), every_s=3600, crawl={"max_pages": 5})
    first = run_jobs(engine, [src], due=True)
    assert first.sources[0].status == "ok" and first.exit_code == 0
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    assert run_jobs(engine, [src], due=True, now=now + dt.timedelta(minutes=30)).sources[0].status == "not_due"
    later = run_jobs(engine, [src], due=True, now=now + dt.timedelta(hours=2))
    assert later.sources[0].status == "ok" and later.sources[0].last_success


def test_serve_with_jobs_runs_the_due_sources_in_the_background(tmp_path, site_dir, embedder):
    import time

    from fathom import Engine
    from webserver import get, running_server

    jobs = write(tmp_path / "jobs.toml", f'[[source]]\nname = "g"\nseeds = ["{site_dir}/docs"]\nevery = "1h"\n')
    engine = Engine(str(tmp_path / "data"), embedder=embedder)
    with running_server(engine, jobs_file=jobs) as base:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            st = json.loads(get(base + "/api/status")[2])
            if st["index"] and st["index"].get("chunks"):
                break
            time.sleep(1)
        assert st["index"]["chunks"] > 0 and st["crawl"]["pages"] >= 4
        assert json.loads(get(base + "/api/search?q=compost")[2])["hits"]
