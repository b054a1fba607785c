"""The `fathom` command: a thin layer over fathom.Engine. Results go to stdout (--json for
machines), progress and logs to stderr. Exit codes: 0 ok, 1 Fathom error, 2 usage error."""
from __future__ import annotations

import dataclasses
import json
import sys
import traceback

import click

from core.errors import FathomError


def _engine(ctx: click.Context):
    from fathom.config import load_config
    from fathom.engine import Engine

    obj = ctx.obj
    return Engine(obj["data"], load_config(obj["config"]))


def _emit(data, as_json: bool, human) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, ensure_ascii=False, default=str))
    else:
        human(data)


def _log(msg: str) -> None:
    click.echo(msg, err=True)


class FathomGroup(click.Group):
    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except FathomError as exc:
            if ctx.obj and ctx.obj.get("debug"):
                traceback.print_exc()
            click.echo(f"error: {exc}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=FathomGroup)
@click.option("--data", envvar="FATHOM_DATA", default="fathom-data", show_default=True,
              help="Data directory (crawl store and index). Env: FATHOM_DATA.")
@click.option("--config", "config", type=click.Path(dir_okay=False), default=None,
              help="TOML config file (see configs/default.toml).")
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(package_name="fathom")
@click.pass_context
def main(ctx, data, config, debug):
    """Fathom: crawl sites, index them, and get cited answers from a local LLM."""
    ctx.obj = {"data": data, "config": config, "debug": debug}


def _data_option(f):
    """Accept --data/--config after the subcommand too (`fathom index --data DIR`)."""
    f = click.option("--data", "data_", default=None, help="Data directory (overrides the group option).")(f)
    f = click.option("--config", "config_", default=None, help="TOML config file.")(f)
    return f


def _apply(ctx, data_, config_):
    if data_:
        ctx.obj["data"] = data_
    if config_:
        ctx.obj["config"] = config_


@main.command()
@click.argument("urls", nargs=-1, required=True)
@click.option("--max-pages", type=click.IntRange(min=1), default=None, help="Stop after this many pages.")
@click.option("--frontier", default=None, metavar="redis://HOST:PORT/DB",
              help="Share the crawl with other `fathom crawl` processes through this Redis (scrapy-redis).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar on stderr.")
@_data_option
@click.pass_context
def crawl(ctx, urls, max_pages, frontier, as_json, quiet, data_, config_):
    """Crawl URLs (and the in-scope pages they link to) into the store."""
    from fathom.progress import Bars

    _apply(ctx, data_, config_)
    with Bars(quiet) as bars:
        report = _engine(ctx).crawl(list(urls), max_pages=max_pages, progress=bars.crawl, frontier=frontier)
        bars.crawl(dataclasses.asdict(report))  # the final counts, even for a crawl shorter than one tick
    _emit(dataclasses.asdict(report), as_json, lambda r: click.echo(
        f"fetched {r['fetched']}: {r['new']} new, {r['changed']} changed, {r['unchanged']} unchanged, "
        f"{r['deleted']} deleted, {r['errors']} errors; skipped {r['skipped'] or 'none'}; "
        f"{r['pages_total']} pages stored ({r['elapsed_s']:.1f}s)"))


@main.command()
@click.option("--rebuild", is_flag=True,
              help="Build from scratch: re-embed every page, trust nothing on disk, drop damaged generations.")
@click.option("--shards", type=click.IntRange(min=1), default=None,
              help="Split pages by a hash of their URL into N shards, searched by fan-out (default: as now).")
@click.option("--store", "stores", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Also index this crawl store (another `fathom crawl --frontier` process's; repeatable).")
@click.option("--ray", default=None, metavar="ADDRESS|auto",
              help="Embed new chunks with Ray Data on this Ray cluster ('auto': a local one).")
@click.option("--json", "as_json", is_flag=True)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar on stderr.")
@_data_option
@click.pass_context
def index(ctx, rebuild, shards, stores, ray, as_json, quiet, data_, config_):
    """Chunk, embed and index the crawled pages into a new index generation."""
    from fathom.progress import Bars

    _apply(ctx, data_, config_)
    with Bars(quiet) as bars:
        report = _engine(ctx).index(rebuild=rebuild, shards=shards, stores=tuple(stores), ray=ray,
                                    progress=bars.index if bars.enabled else None)
    _emit(dataclasses.asdict(report), as_json, lambda r: click.echo(
        f"indexed {r['pages']} pages as {r['chunks']} chunks (+{r['added']} -{r['removed']}, "
        f"{r['embedded']} embedded) in {r['elapsed_s']:.1f}s; generation {r['generation']}"))


@main.command()
@click.argument("query")
@click.option("-k", type=click.IntRange(min=1, max=100), default=10, show_default=True)
@click.option("--url-prefix", default="", help="Only pages whose URL starts with this.")
@click.option("--host", "hosts", multiple=True, help="Only pages on this host (repeatable).")
@click.option("--since", default="", help="Only pages whose date (see --date-field) is on or after this ISO date.")
@click.option("--until", default="", help="Only pages whose date is on or before this ISO date (a date includes its day).")
@click.option("--date-field", type=click.Choice(["changed_at", "fetched_at", "modified_at"]), default="changed_at",
              show_default=True, help="Which page date --since/--until apply to.")
@click.option("--lang", "langs", multiple=True, help="Only pages in this language, e.g. en (repeatable).")
@click.option("--rerank/--no-rerank", default=None,
              help="Reorder the best candidates with the cross-encoder (default: [retrieve] rerank).")
@click.option("--explain", is_flag=True, help="Show which engine found each hit, at what rank and score.")
@click.option("--ray", default=None, metavar="ADDRESS|auto",
              help="Sharded index: search each shard in a Ray actor on this cluster ('auto': a local one).")
@click.option("--json", "as_json", is_flag=True)
@_data_option
@click.pass_context
def search(ctx, query, k, url_prefix, hosts, since, until, date_field, langs, rerank, explain, ray, as_json, data_,
           config_):
    """Hybrid search: the best pages for QUERY with snippets."""
    from retriever.hybrid import Filters

    _apply(ctx, data_, config_)
    try:
        filters = Filters(url_prefix, tuple(hosts), since=since, until=until, date_field=date_field,
                          langs=tuple(langs))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--since/--until") from None
    if ray is not None:
        retriever = _engine(ctx).ray_retriever(ray)
        try:
            result = retriever.search(query, k=k, filters=filters, rerank=rerank)
        finally:
            retriever.close()
    else:
        result = _engine(ctx).search(query, k=k, filters=filters, rerank=rerank)
    data = search_dict(result)

    def human(d):
        for note in d["notes"]:
            _log(f"note: {note}")
        if not d["hits"]:
            click.echo("no results")
        for i, h in enumerate(d["hits"], 1):
            click.echo(f"{i}. {h['title']}\n   {h['url']}\n   {h['snippet']}")
            if explain:
                bm25 = (f"bm25 #{h['bm25_rank']} ({h['bm25_score']:.2f})" if h["bm25_rank"] else "bm25 -")
                dense = (f"dense #{h['dense_rank']} (cos {h['dense_score']:.3f})" if h["dense_rank"] else "dense -")
                page = f"page #{h['page_rank']}" if h["page_rank"] else "page -"
                rr = (f", rerank #{h['rerank_rank']} ({h['rerank_score']:.2f})" if h["rerank_rank"] else "")
                click.echo(f"   explain: {bm25}, {dense}, {page}, fused {h['score']:.5f}{rr}")
            click.echo("")
    _emit(data, as_json, human)


def search_dict(result) -> dict:
    """The JSON of `fathom search --json` (and of the web API's /api/search)."""
    return {"hits": [{"url": h.url, "title": h.title, "score": h.score, "snippet": h.snippet,
                      "heading": h.heading, "bm25_rank": h.bm25_rank, "bm25_score": h.bm25_score,
                      "dense_rank": h.dense_rank, "dense_score": h.dense_score, "page_rank": h.page_rank,
                      "rerank_rank": h.rerank_rank, "rerank_score": h.rerank_score}
                     for h in result.hits],
            "timings_ms": {k_: round(v, 2) for k_, v in result.timings_ms.items()},
            "notes": list(result.notes)}


def answer_dict(ans) -> dict:
    return {"answer": ans.answer, "mode": ans.mode, "reason": ans.reason, "abstained": ans.abstained,
            "citations": [{"n": c.n, "url": c.url, "title": c.title, "heading": c.heading,
                           "snippet": c.snippet, "passage": c.passage} for c in ans.citations],
            "timings": dict(ans.timings), "model": ans.model, "notes": list(ans.notes),
            "sentences": [dataclasses.asdict(x) for x in ans.sentences], "evidence": ans.evidence}


def print_answer(d: dict) -> None:
    click.echo(d["answer"])
    click.echo("")
    label = "Closest sources" if d["abstained"] else "Sources"
    if d["citations"]:
        click.echo(f"{label}:")
        for c in d["citations"]:
            click.echo(f"  [{c['n']}] {c['title']}" + (f" — {c['heading'].split(' > ')[-1]}" if c["heading"] else ""))
            click.echo(f"      {c['url']}")
    _log(f"mode: {d['mode']} ({d['reason']}); total {d['timings'].get('total_ms', 0) / 1000:.1f}s")
    for note in d["notes"]:
        _log(f"note: {note}")


@main.command()
@click.argument("question")
@click.option("--mode", type=click.Choice(["fast", "slow", "auto"]), default=None,
              help="fast: small model; slow: larger model, more context; auto: chosen per question.")
@click.option("--ray", default=None, metavar="ADDRESS|auto",
              help="Sharded index: search each shard in a Ray actor on this cluster ('auto': a local one).")
@click.option("--json", "as_json", is_flag=True)
@_data_option
@click.pass_context
def ask(ctx, question, mode, ray, as_json, data_, config_):
    """Answer QUESTION from the index, with numbered citations."""
    _apply(ctx, data_, config_)
    engine = _engine(ctx)
    if ray is not None:
        synth = engine.ray_synthesizer(ray)
        try:
            answer = answer_dict(synth.query_engine(mode).query(question).metadata["answer"])
        finally:
            synth.retriever.close()
        if as_json:
            click.echo(json.dumps(answer, indent=2, ensure_ascii=False))
        else:
            print_answer(answer)
        return
    if as_json:
        click.echo(json.dumps(answer_dict(engine.ask(question, mode)), indent=2, ensure_ascii=False))
        return
    final = None
    for item in engine.ask_stream(question, mode):
        if isinstance(item, str):
            if sys.stderr.isatty():
                click.echo(item, err=True, nl=False)
        else:
            final = item
    if sys.stderr.isatty():
        click.echo("\n", err=True)
    print_answer(answer_dict(final))


@main.command()
@click.option("--verify", is_flag=True, help="Check every index file's sha256 (slow on a large index).")
@click.option("--json", "as_json", is_flag=True)
@_data_option
@click.pass_context
def status(ctx, verify, as_json, data_, config_):
    """What is crawled and indexed, and the index's persisted settings. With --verify, exit
    code 1 when the index is damaged."""
    _apply(ctx, data_, config_)
    st = _engine(ctx).status(verify=verify).to_dict()

    def human(s):
        click.echo(f"data: {s['data_dir']}")
        c = s["crawl"]
        click.echo(f"crawl: {c['pages']} pages, {c['deleted']} deleted, {c['aliases']} aliases" if c
                   else "crawl: nothing crawled")
        i = s["index"]
        if i and "error" in i:
            click.echo(f"index: damaged: {i['error']}")
            click.echo(f"  searches use the previous generation {i['serving']}" if i.get("serving")
                       else "  no usable generation: run `fathom index --rebuild`")
        elif i:
            click.echo(f"index: generation {i['generation']}, {i['pages']} pages, {i['chunks']} chunks, "
                       f"built {i['built_at']}")
            for k_, v in i["settings"].items():
                click.echo(f"  {k_}: {v}")
            if i.get("note"):
                click.echo(f"  note: {i['note']}")
        else:
            click.echo("index: none")
    _emit(st, as_json, human)
    if verify and st["index"] and "error" in st["index"]:
        sys.exit(1)


@main.command(name="eval")
@click.argument("path", type=click.Path(exists=True, dir_okay=False), required=False)
@click.option("--engines", default="bm25,dense,hybrid", show_default=True,
              help="Comma-separated engine settings to score: bm25, dense, hybrid, rerank (hybrid + cross-encoder), "
                   "page (page-level BM25 alone), naive (page BM25 + dense, RRF k=60: the shared/eval baseline).")
@click.option("--site", "sites", nargs=2, multiple=True, metavar="DATA_DIR QRELS",
              type=(click.Path(file_okay=False), click.Path(exists=True, dir_okay=False)),
              help="Score a qrels file against the index in DATA_DIR (repeatable): one table over all sites, "
                   "with the mean over sites per engine. Replaces PATH and --data.")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Score only the first N queries.")
@click.option("--qa", is_flag=True, help="Answer the questions of a QA file and score the answers per mode.")
@click.option("--modes", default="fast,slow,auto", show_default=True, help="With --qa: modes to score.")
@click.option("--unanswerable", type=click.Path(exists=True, dir_okay=False), default=None,
              help="With --qa: JSON lines of questions the site cannot answer (measures abstention).")
@click.option("--json", "as_json", is_flag=True)
@_data_option
@click.pass_context
def eval_cmd(ctx, path, engines, limit, qa, modes, unanswerable, sites, as_json, data_, config_):
    """Score retrieval on a qrels file (query + relevant pages) or a QA file (question + source page):
    nDCG@10, Recall@10, MRR@10, hit@5 and latency per engine setting. With --qa, score answers.
    With --site DATA_DIR QRELS (repeatable), score several sites in one per-site table."""
    _apply(ctx, data_, config_)
    if sites:
        if path or qa:
            raise click.UsageError("--site replaces PATH and cannot be combined with --qa")
        _eval_sites(ctx, sites, engines, limit, as_json)
        return
    if not path:
        raise click.UsageError("give a qrels/QA file PATH, or --site DATA_DIR QRELS")
    if qa:
        chosen_modes = tuple(m.strip() for m in modes.split(",") if m.strip())
        if any(m not in ("fast", "slow", "auto") for m in chosen_modes):
            raise click.BadParameter(f"unknown mode in {modes!r}", param_hint="--modes")
        evals = _engine(ctx).evaluate_answers(path, unanswerable, chosen_modes, limit)
        data = {"file": path, "unanswerable": unanswerable, "results": [dataclasses.asdict(e) for e in evals]}

        def human_qa(d):
            click.echo(f"{'mode':<5} {'cites src':>9} {'F1':>6} {'support':>8} {'false abst':>10} "
                       f"{'abstain':>8} {'mean s':>7} {'p95 s':>6} {'1st tok ms':>10} {'tok/s':>6}")
            for r in d["results"]:
                click.echo(f"{r['mode']:<5} {r['cites_source']:>9.3f} {r['token_f1']:>6.3f} "
                           f"{r['citation_support']:>8.3f} {r['false_abstention']:>10.3f} {r['abstention']:>8.3f} "
                           f"{r['mean_s']:>7.2f} {r['p95_s']:>6.2f} {r['first_token_ms_p50']:>10.0f} "
                           f"{r['tokens_per_s']:>6.1f}")
            click.echo(f"\n{'mode':<5} {'copy p50':>8} {'copy max':>8} {'broken':>6} {'dup src':>7} "
                       f"{'answered mean s':>15} {'answered p95 s':>14}")
            for r in d["results"]:
                click.echo(f"{r['mode']:<5} {r['copy_words_p50']:>8.1f} {r['copy_words_max']:>8} "
                           f"{r['broken_code']:>6} {r['duplicate_sources']:>7} {r['answered_mean_s']:>15.2f} "
                           f"{r['answered_p95_s']:>14.2f}")
        _emit(data, as_json, human_qa)
        return
    chosen = _eval_engines(engines)
    results = _engine(ctx).evaluate(path, chosen, limit)
    data = {"file": path, "results": [{k: v for k, v in dataclasses.asdict(r).items() if k != "per_query"}
                                      for r in results]}

    def human(d):
        click.echo(f"{'engines':<8} {'queries':>7} {'nDCG@10':>8} {'R@10':>7} {'MRR@10':>7} {'hit@5':>6} "
                   f"{'p50 ms':>7} {'p95 ms':>7}")
        for r in d["results"]:
            click.echo(f"{r['engines']:<8} {r['queries']:>7} {r['ndcg_at_10']:>8.3f} {r['recall_at_10']:>7.3f} "
                       f"{r['mrr_at_10']:>7.3f} {r['hit_at_5']:>6.3f} {r['p50_ms']:>7.1f} {r['p95_ms']:>7.1f}")
    _emit(data, as_json, human)


def _eval_engines(engines: str) -> tuple[str, ...]:
    chosen = tuple(e.strip() for e in engines.split(",") if e.strip())
    bad = [e for e in chosen if e not in ("bm25", "dense", "hybrid", "rerank", "page", "naive")]
    if bad or not chosen:
        raise click.BadParameter(f"unknown engine(s) {bad}" if bad else "no engines given", param_hint="--engines")
    return chosen


def _eval_sites(ctx, sites, engines: str, limit, as_json: bool) -> None:
    from fathom.config import load_config
    from fathom.engine import evaluate_sites

    chosen = _eval_engines(engines)
    data = evaluate_sites(list(sites), chosen, limit, load_config(ctx.obj["config"]), log=_log)

    def human(d):
        names = [s["site"] for s in d["sites"]]
        width = max(8, *(len(n) for n in names))
        for metric, label in (("ndcg_at_10", "nDCG@10"), ("recall_at_10", "Recall@10"), ("mrr_at_10", "MRR@10")):
            click.echo(f"{label:<8} " + " ".join(f"{n:>{width}}" for n in names) + f" {'mean':>{width}}")
            for e in d["engines"]:
                vals = [s["results"][e][metric] for s in d["sites"]]
                click.echo(f"{e:<8} " + " ".join(f"{v:>{width}.3f}" for v in vals)
                           + f" {d['mean'][e][metric]:>{width}.3f}")
            click.echo("")
        click.echo("queries: " + ", ".join(f"{s['site']} {s['queries']}" for s in d["sites"]))
    _emit(data, as_json, human)


@main.command()
@click.option("--opensearch", "opensearch", required=True, type=click.Path(dir_okay=False),
              metavar="FILE.ndjson", help="Write the OpenSearch bulk body here and FILE.mapping.json beside it.")
@click.option("--index-name", default="fathom", show_default=True, help="OpenSearch index name in the actions.")
@click.option("--json", "as_json", is_flag=True)
@_data_option
@click.pass_context
def export(ctx, opensearch, index_name, as_json, data_, config_):
    """Export the index for OpenSearch (BM25 text fields + k-NN HNSW vectors), validated against its mapping."""
    _apply(ctx, data_, config_)
    out = _engine(ctx).export_opensearch(opensearch, index_name)
    _emit(out, as_json, lambda r: click.echo(
        f"wrote {r['documents']} documents to {r['bulk']} (validated against {r['mapping']}); load with\n"
        f"  curl -XPUT HOST/{r['index']} -H 'Content-Type: application/json' --data-binary @{r['mapping']}\n"
        f"  curl -XPOST HOST/_bulk -H 'Content-Type: application/x-ndjson' --data-binary @{r['bulk']}"))


@main.command()
@click.option("--question", default=None, help="Question to ask (default: a Python FAQ question).")
@click.option("--docs", default=None, help="HTML root to serve (default: Debian's python3.11-doc).")
@click.option("--mode", type=click.Choice(["fast", "slow", "auto"]), default=None)
@click.option("--json", "as_json", is_flag=True)
@_data_option
@click.pass_context
def demo(ctx, question, docs, mode, as_json, data_, config_):
    """Crawl the Python tutorial and FAQ from a local server, index them, answer a question."""
    from fathom import demo as demo_mod

    _apply(ctx, data_, config_)
    result = demo_mod.run_demo(_engine(ctx), docs or demo_mod.PYTHON_DOCS,
                               question=question or demo_mod.QUESTION, mode=mode, log=_log)
    d = answer_dict(result.answer)
    if as_json:
        click.echo(json.dumps({"crawl": dataclasses.asdict(result.crawl),
                               "index": dataclasses.asdict(result.index), "answer": d}, indent=2))
    else:
        click.echo(f"Q: {question or demo_mod.QUESTION}\n")
        print_answer(d)


@main.command(name="run")
@click.argument("jobs_file", type=click.Path(dir_okay=False))
@click.option("--due", is_flag=True, help="Only the sources whose `every` interval has passed since their last success.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars on stderr.")
@_data_option
@click.pass_context
def run_cmd(ctx, jobs_file, due, as_json, quiet, data_, config_):
    """Crawl, then incrementally index, every source of JOBS_FILE ([[source]] tables).

    Exit codes: 0 all sources ok (or none due), 3 some failed, 1 error or all failed,
    2 usage error, 75 another run holds the lock (safe to retry later)."""
    from core.errors import JobsLocked
    from fathom.jobs import EXIT_LOCKED, load_and_run
    from fathom.progress import Bars

    _apply(ctx, data_, config_)
    engine = _engine(ctx)
    try:
        with Bars(quiet) as bars:
            report = load_and_run(engine, jobs_file, due=due, progress=bars.job_event)
    except JobsLocked as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_LOCKED)
    if as_json:
        click.echo(json.dumps(report.to_dict(), indent=2, ensure_ascii=False, default=str))
    else:
        for r in report.sources:
            detail = (f"fetched {r.fetched} ({r.new} new, {r.changed} changed, {r.errors} errors), "
                      f"{r.pages_total} pages" if r.status == "ok" else
                      r.error if r.status == "failed" else f"next due {r.next_due} UTC")
            click.echo(f"{r.name}: {r.status}: {detail}")
        click.echo(report.summary())
    sys.exit(report.exit_code)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind. Anything but loopback exposes your index to the network.")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True)
@click.option("--jobs", "jobs_file", type=click.Path(exists=True, dir_okay=False), default=None,
              help="A jobs file whose due sources run in the background (checked every minute).")
@click.option("--warm/--no-warm", default=True, show_default=True,
              help="Load both answer models and the reranker at start, so the first answer does not wait.")
@_data_option
@click.pass_context
def serve(ctx, host, port, jobs_file, warm, data_, config_):
    """The local web UI and JSON API (search, streaming cited answers, sources, evaluation)."""
    from fathom.server import serve as run_server

    _apply(ctx, data_, config_)
    if host not in ("127.0.0.1", "localhost", "::1"):
        _log(f"warning: binding {host} makes this Fathom reachable from other machines; "
             f"it has no authentication. Use the default 127.0.0.1 unless you mean it.")
    if jobs_file:
        from fathom.jobs import load_jobs
        load_jobs(jobs_file)  # a bad file fails now, not in the background
    run_server(_engine(ctx), host=host, port=port, jobs_file=jobs_file, log=_log, warm_models=warm)

if __name__ == "__main__":
    main()
