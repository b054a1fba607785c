"""`fathom serve`: the local web UI and its JSON API (Starlette on uvicorn).

Every handler calls the Engine; the page is Jinja2 templates (autoescaped) plus one small
vanilla-JS file, all served from this package. Security, in one place (`Guard`): requests whose
Host is not the bound address, localhost or 127.0.0.1 are refused (DNS rebinding), POSTs must be
same-origin, and every response carries a Content-Security-Policy without inline script.
"""
from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import itertools
import json
import math
import os
import re
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator, Callable

import anyio
import anyio.to_thread
import duckdb
from markupsafe import Markup, escape
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates

from core.errors import FathomError, IndexNotFound, JobsLocked, QueryError
from fathom.cli import answer_dict, search_dict
from fathom.jobs import Source, load_and_run, run_jobs

HERE = os.path.dirname(os.path.abspath(__file__))
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
MODES = ("fast", "slow", "auto")


# --- security -------------------------------------------------------------------------------
class Guard:
    """ASGI middleware: Host allow-list, same-origin POSTs, security headers on every response."""

    def __init__(self, app, bound_host: str):
        self.app = app
        self.allowed = {"localhost", "127.0.0.1", bound_host.strip("[]").lower()}

    @staticmethod
    def _host_name(value: str) -> str:
        value = value.strip().lower()
        if value.startswith("["):  # [::1]:8000
            return value[1:value.find("]")] if "]" in value else value
        return value.rsplit(":", 1)[0] if value.count(":") == 1 else value

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        host = headers.get("host", "")
        if self._host_name(host) not in self.allowed:
            return await self._refuse(send, 421, f"host {host!r} is not served here (only "
                                                 f"{', '.join(sorted(self.allowed))})")
        if scope["method"] not in ("GET", "HEAD", "OPTIONS"):
            origin = headers.get("origin")
            if origin is not None:
                if origin != f"http://{host}":
                    return await self._refuse(send, 403, "cross-origin request refused")
            elif headers.get("sec-fetch-site", "same-origin") != "same-origin" or \
                    not headers.get("content-type", "").startswith("application/json"):
                # no Origin: only a non-browser client sending JSON (a foreign page cannot send
                # application/json without a CORS preflight, which this server never approves)
                return await self._refuse(send, 403, "a state-changing request needs a same-origin "
                                                     "Origin header or a JSON body")

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                extra = [(b"content-security-policy", CSP.encode()), (b"x-content-type-options", b"nosniff"),
                         (b"referrer-policy", b"no-referrer"), (b"x-frame-options", b"DENY"),
                         (b"cross-origin-opener-policy", b"same-origin")]
                message = dict(message, headers=list(message.get("headers", [])) + extra)
            await send(message)
        await self.app(scope, receive, send_with_headers)

    @staticmethod
    async def _refuse(send, status: int, text: str):
        body = json.dumps({"error": text}).encode()
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                                (b"content-security-policy", CSP.encode())]})
        await send({"type": "http.response.body", "body": body})


# --- server-sent events -----------------------------------------------------------------------
def sse(event: str, data) -> str:
    payload = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, default=str)
    return f"event: {event}\n" + "".join(f"data: {line}\n" for line in payload.split("\n")) + "\n"


class EventStream(Response):
    """Streams an async generator of SSE strings and stops it as soon as the client leaves:
    a listener task watches for http.disconnect and cancels the stream, and the generator is
    closed (its `finally` blocks run) in every case."""

    media_type = "text/event-stream"

    def __init__(self, events: AsyncIterator[str]):
        self.status_code = 200
        self.background = None
        self.raw_headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-store"),
                            (b"x-accel-buffering", b"no")]  # no content-length: the body streams
        self.events = events

    async def __call__(self, scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
        try:
            async with anyio.create_task_group() as tg:
                async def listen():
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    tg.cancel_scope.cancel()
                tg.start_soon(listen)
                try:
                    async for chunk in self.events:
                        await send({"type": "http.response.body", "body": chunk.encode(), "more_body": True})
                    await send({"type": "http.response.body", "body": b"", "more_body": False})
                except OSError:  # the client went away mid-send
                    pass
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.events.aclose()


# --- one answer at a time ----------------------------------------------------------------------
class AnswerQueue:
    """FIFO of answer requests: the head generates, the rest see their place (2 cores: one at a time)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._tickets = itertools.count(1)
        self._waiting: list[int] = []

    def join(self) -> int:
        with self._lock:
            t = next(self._tickets)
            self._waiting.append(t)
            return t

    def position(self, ticket: int) -> int:
        """0: this request's turn; n: n requests are ahead of it."""
        with self._lock:
            return self._waiting.index(ticket)

    def leave(self, ticket: int) -> None:
        with self._lock:
            if ticket in self._waiting:
                self._waiting.remove(ticket)

    def __len__(self) -> int:
        return len(self._waiting)


# --- background jobs --------------------------------------------------------------------------
@dataclasses.dataclass
class Job:
    id: str
    seeds: tuple[str, ...]
    max_pages: int | None
    events: list[dict] = dataclasses.field(default_factory=list)
    done: bool = False
    started: float = dataclasses.field(default_factory=time.time)


class Jobs:
    """Crawl + index jobs started from the page, run one after another in a thread."""

    def __init__(self, engine, jobs_file: str | None = None, log: Callable[[str], None] = print):
        self.engine = engine
        self.jobs: dict[str, Job] = {}
        self.jobs_file = jobs_file
        self.log = log
        self._lock = threading.Lock()
        self._stop = threading.Event()

    def start(self, seeds: list[str], max_pages: int | None) -> Job:
        job = Job(hashlib.sha256(f"{time.time_ns()} {seeds}".encode()).hexdigest()[:12], tuple(seeds), max_pages)
        self.jobs[job.id] = job
        threading.Thread(target=self._run, args=(job,), daemon=True, name=f"job-{job.id}").start()
        return job

    def _run(self, job: Job) -> None:
        crawl = {"max_pages": job.max_pages} if job.max_pages else {}
        name = "web:" + ",".join(job.seeds)[:200]
        with self._lock:  # jobs from the page queue behind each other; another process gets JobsLocked
            try:
                report = run_jobs(self.engine, [Source(name, job.seeds, None, crawl)], progress=job.events.append)
                job.events.append({"stage": "finished", "report": report.to_dict(), "exit_code": report.exit_code})
            except FathomError as exc:
                job.events.append({"stage": "failed", "error": str(exc)})
            except Exception as exc:  # never leave the page waiting on a job that died
                job.events.append({"stage": "failed", "error": f"{type(exc).__name__}: {exc}"})
            finally:
                job.done = True

    def run_due_forever(self, every_s: float = 60.0) -> None:
        """`fathom serve --jobs FILE`: run the file's due sources now and then every minute."""
        def loop():
            while not self._stop.is_set():
                try:
                    with self._lock:
                        report = load_and_run(self.engine, self.jobs_file, due=True)
                    if any(s.status != "not_due" for s in report.sources):
                        self.log(f"jobs: {report.summary()}")
                except JobsLocked:
                    pass
                except FathomError as exc:
                    self.log(f"jobs: error: {exc}")
                self._stop.wait(every_s)
        threading.Thread(target=loop, daemon=True, name="due-jobs").start()

    def stop(self) -> None:
        self._stop.set()


# --- view helpers -----------------------------------------------------------------------------
def highlight(text: str, query: str) -> Markup:
    """`text` escaped, with the query's words (3+ letters) wrapped in <mark>; the '#' heading
    markers of the stored page text are dropped."""
    text = re.sub(r"(^|\s)#{1,6}\s+", r"\1", text)
    terms = sorted({t for t in re.findall(r"\w{3,}", query.lower())}, key=len, reverse=True)
    if not terms:
        return escape(text)
    pattern = re.compile(r"(" + "|".join(re.escape(t) for t in terms) + r")", re.IGNORECASE)
    out = Markup("")
    for i, part in enumerate(pattern.split(text)):
        out += Markup("<mark>{}</mark>").format(part) if i % 2 else escape(part)
    return out


def safe_href(url: str) -> str:
    """Only http(s) and file links are made clickable; anything else (javascript:, data:) becomes '#'."""
    return url if urllib.parse.urlsplit(url).scheme.lower() in ("http", "https", "file") else "#"


def human_bytes(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def eval_chart(results: list[dict]) -> Markup:
    """Grouped bars of nDCG@10 and Recall@10 per engine, and p50/p95 latency, as inline SVG."""
    if not results:
        return Markup("")
    bar_w, gap, left, top, h = 26, 22, 46, 16, 160
    group_w = bar_w * 2 + gap
    width = left + group_w * len(results) + 20
    lat_max = max(max(r["p95_ms"], r["p50_ms"]) for r in results) or 1.0

    def chart(title: str, series: list[tuple[str, str, Callable[[dict], float]]], vmax: float, fmt: str) -> str:
        parts = [f'<svg class="chart" role="img" viewBox="0 0 {width} {h + top + 44}" width="{width}" '
                 f'height="{h + top + 44}" aria-label="{escape(title)}"><title>{escape(title)}</title>']
        for i in range(5):  # grid lines and axis labels
            v = vmax * i / 4
            y = top + h - h * i / 4
            parts.append(f'<line class="grid" x1="{left}" x2="{width - 10}" y1="{y:.1f}" y2="{y:.1f}"/>'
                         f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{fmt.format(v)}</text>')
        for gi, r in enumerate(results):
            x0 = left + 10 + gi * group_w
            for si, (_, cls, get) in enumerate(series):
                v = get(r)
                bh = 0 if vmax <= 0 else h * min(v, vmax) / vmax
                x = x0 + si * bar_w
                parts.append(f'<rect class="{cls}" x="{x}" y="{top + h - bh:.1f}" width="{bar_w - 4}" '
                             f'height="{bh:.1f}"><title>{escape(r["engines"])}: {fmt.format(v)}</title></rect>'
                             f'<text class="val" x="{x + (bar_w - 4) / 2}" y="{top + h - bh - 3:.1f}" '
                             f'text-anchor="middle">{fmt.format(v)}</text>')
            parts.append(f'<text class="label" x="{x0 + bar_w - 2}" y="{top + h + 16}" text-anchor="middle">'
                         f'{escape(r["engines"])}</text>')
        lx = left
        for name, cls, _ in series:
            parts.append(f'<rect class="{cls}" x="{lx}" y="{top + h + 28}" width="10" height="10"/>'
                         f'<text class="axis" x="{lx + 14}" y="{top + h + 37}">{escape(name)}</text>')
            lx += 14 + 8 * len(name) + 16
        parts.append("</svg>")
        return "".join(parts)

    quality = chart("nDCG@10 and Recall@10 per engine",
                    [("nDCG@10", "s1", lambda r: r["ndcg_at_10"]), ("Recall@10", "s2", lambda r: r["recall_at_10"])],
                    1.0, "{:.2f}")
    latency = chart("query latency per engine (ms)",
                    [("p50 ms", "s1", lambda r: r["p50_ms"]), ("p95 ms", "s2", lambda r: r["p95_ms"])],
                    _nice(lat_max), "{:.0f}")
    return Markup(quality + latency)


def _nice(v: float) -> float:
    """The next 'round' number at or above v (axis maximum)."""
    e = 10 ** math.floor(math.log10(v)) if v > 0 else 1
    for m in (1, 2, 2.5, 5, 10):
        if m * e >= v:
            return m * e
    return 10 * e


def _store_error(exc: Exception) -> str:
    msg = str(exc)
    if "lock" in msg.lower() or isinstance(exc, duckdb.Error):
        return "the crawl store is busy (a crawl is writing it); reload when the job has finished"
    return msg


# --- the app ----------------------------------------------------------------------------------
# a query must hold something besides whitespace (the server strips it, control characters too)
QUERY_SCHEMA = {"type": "string", "minLength": 1, "pattern": "\\S"}


def create_app(engine, bound_host: str = "127.0.0.1", jobs_file: str | None = None,
               log: Callable[[str], None] = print, warm_models: bool = False) -> Starlette:
    templates = Jinja2Templates(directory=os.path.join(HERE, "templates"))
    templates.env.globals.update(highlight=highlight, human_bytes=human_bytes)
    templates.env.filters["safe_href"] = safe_href
    queue = AnswerQueue()
    jobs = Jobs(engine, jobs_file, log)
    evals: list[dict] = []  # finished evaluation runs, newest first

    def page(request: Request, name: str, status_code: int = 200, **ctx) -> HTMLResponse:
        return templates.TemplateResponse(request, name, ctx | {"nav": name}, status_code=status_code)

    async def blocking(fn, *args):
        return await anyio.to_thread.run_sync(fn, *args)

    def index_state() -> tuple[bool, str]:
        """Whether there is a usable index, else the message that says what to run."""
        try:
            engine.open_index()
            return True, ""
        except IndexNotFound:
            return False, (f"No index yet in {engine.data_dir}. Crawl and index a site first: "
                           f"`fathom crawl URL --data {engine.data_dir}` then `fathom index --data "
                           f"{engine.data_dir}`, or add a site on the Sources page.")
        except FathomError as exc:
            return False, str(exc)

    def page_date(hit) -> str:
        chunk = engine.open_index().chunks.get(hit.chunk_id)
        if chunk is None:
            return ""
        return (chunk.modified_at or chunk.changed_at or chunk.fetched_at or "")[:10]

    def _k(value: str | None, default: int = 10) -> int:
        try:
            k = int(value) if value not in (None, "") else default
        except ValueError:
            raise QueryError(f"k must be a whole number, got {value!r}") from None
        if not 1 <= k <= 100:
            raise QueryError("k must be between 1 and 100")
        return k

    # pages
    async def home(request: Request):
        q = request.query_params.get("q", "").strip()
        mode = request.query_params.get("mode", "auto")
        if mode not in MODES:
            mode = "auto"
        ready, problem = await blocking(index_state)
        ctx = {"q": q, "mode": mode, "ready": ready, "problem": problem, "hits": [], "error": "", "took_ms": 0}
        if q and ready:
            try:
                t0 = time.perf_counter()
                result = await blocking(lambda: engine.search(q, k=10))
                ctx["took_ms"] = round((time.perf_counter() - t0) * 1000)
                ctx["hits"] = [(h, page_date(h)) for h in result.hits]
                ctx["notes"] = result.notes
            except FathomError as exc:
                ctx["error"] = str(exc)
        return page(request, "search.html", 200 if ready else 503, **ctx)

    def safe_status():
        """Engine.status(), or a status without the crawl part while a writer holds the store."""
        try:
            return engine.status(), ""
        except (FathomError, duckdb.Error) as exc:
            from fathom.engine import Status
            return Status(engine.data_dir), _store_error(exc)

    async def sources(request: Request):
        st, busy = await blocking(safe_status)
        sites, outcomes, store_problem = [], [], busy
        outcome_filter = request.query_params.get("outcome", "")
        if not busy and os.path.exists(engine.store_path):
            try:
                sites = await blocking(engine.sites)
                outcomes = await blocking(lambda: engine.outcomes(1000))
            except (FathomError, duckdb.Error) as exc:
                store_problem = _store_error(exc)
        counts: dict[str, int] = {}
        for o in outcomes:
            counts[o["outcome"]] = counts.get(o["outcome"], 0) + 1
        if outcome_filter:
            outcomes = [o for o in outcomes if o["outcome"] == outcome_filter]
        running = [j for j in jobs.jobs.values() if not j.done]
        return page(request, "sources.html", status=st, sites=sites, outcomes=outcomes[:500], counts=counts,
                    outcome_filter=outcome_filter, store_problem=store_problem, running=running,
                    jobs_file=jobs_file)

    async def eval_page(request: Request):
        form, error = {"file": "", "engines": ["bm25", "dense", "hybrid"], "limit": "20"}, ""
        if request.method == "POST":
            raw = urllib.parse.parse_qs((await request.body()).decode("utf-8", "replace"))
            form = {"file": raw.get("file", [""])[0].strip(), "engines": raw.get("engines", []),
                    "limit": raw.get("limit", [""])[0].strip()}
            try:
                if not form["file"]:
                    raise QueryError("give the path of a qrels or QA file (JSON lines) on this machine")
                if not os.path.isfile(form["file"]):
                    raise QueryError(f"no such file: {form['file']}")
                engines = tuple(e for e in form["engines"] if e in ("bm25", "dense", "hybrid", "rerank"))
                if not engines:
                    raise QueryError("choose at least one engine")
                limit = int(form["limit"]) if form["limit"] else None
                if limit is not None and limit < 1:
                    raise QueryError("limit must be at least 1")
                t0 = time.perf_counter()
                results = await blocking(lambda: engine.evaluate(form["file"], engines, limit))
                evals.insert(0, {"file": form["file"], "limit": limit, "elapsed_s": time.perf_counter() - t0,
                                 "at": time.strftime("%Y-%m-%d %H:%M:%S"),
                                 "results": [{k: v for k, v in dataclasses.asdict(r).items() if k != "per_query"}
                                             for r in results]})
            except FathomError as exc:  # before ValueError: QueryError is one too
                error = str(exc)
            except ValueError:
                error = f"limit must be a whole number, got {form['limit']!r}"
        ready, problem = await blocking(index_state)
        latest = evals[0] if evals else None
        return page(request, "eval.html", 400 if error else 200, form=form, error=error, ready=ready,
                    problem=problem, latest=latest, chart=eval_chart(latest["results"]) if latest else "",
                    history=evals[1:10])

    # API
    async def api_search(request: Request):
        q = request.query_params.get("q", "").strip()
        try:
            if not q:
                raise QueryError("the query is empty: pass ?q=")
            k = _k(request.query_params.get("k"))
            result = await blocking(lambda: engine.search(q, k=k))
        except IndexNotFound as exc:
            return JSONResponse({"error": str(exc)}, 503)
        except FathomError as exc:
            return JSONResponse({"error": str(exc)}, 400)
        return JSONResponse(search_dict(result))

    async def api_ask(request: Request):
        q = request.query_params.get("q", "").strip()
        mode = request.query_params.get("mode", "auto")
        if not q or mode not in MODES:
            return JSONResponse({"error": "pass ?q=QUESTION and mode=fast|slow|auto"}, 400)
        return EventStream(answer_events(q, mode))

    async def answer_events(q: str, mode: str) -> AsyncIterator[str]:
        ticket = queue.join()
        gen = None
        try:
            last = -1
            while (pos := queue.position(ticket)) > 0:
                if pos != last:
                    yield sse("queue", {"position": pos})
                    last = pos
                await asyncio.sleep(0.2)
            yield sse("start", {"mode": mode})
            gen = engine.ask_stream(q, mode)
            # the sync generator advances one step at a time in a worker thread; leaving this loop
            # (the client left, an error) closes it in `finally`, which frees the model
            while True:
                item = await anyio.to_thread.run_sync(next, gen, None)
                if item is None:
                    break
                if isinstance(item, str):
                    yield sse("token", json.dumps(item))
                else:
                    yield sse("answer", answer_dict(item))
        except FathomError as exc:
            yield sse("failure", {"error": str(exc), "kind": type(exc).__name__})
        except Exception as exc:  # a bug must still end the stream with a message
            yield sse("failure", {"error": f"internal error: {type(exc).__name__}: {exc}", "kind": "internal"})
        finally:
            if gen is not None:
                with anyio.CancelScope(shield=True):
                    await anyio.to_thread.run_sync(gen.close)
            queue.leave(ticket)

    async def api_status(request: Request):
        st, busy = await blocking(safe_status)
        out = st.to_dict() | {"store_problem": busy} | {"answers_queued": len(queue),
                              "jobs": [{"id": j.id, "seeds": j.seeds, "done": j.done} for j in jobs.jobs.values()]}
        try:
            out["sites"] = await blocking(engine.sites) if st.crawl else []
        except (FathomError, duckdb.Error) as exc:
            out["sites"], out["store_problem"] = [], _store_error(exc)
        if not out["store_problem"]:
            del out["store_problem"]
        return JSONResponse(json.loads(json.dumps(out, default=str)))

    async def api_jobs_post(request: Request):
        try:
            body = json.loads(await request.body() or b"{}")
        except ValueError:
            return JSONResponse({"error": "the body must be JSON: {\"seeds\": [URL, ...], \"max_pages\": N}"}, 400)
        seeds = body.get("seeds") if isinstance(body, dict) else None
        if isinstance(seeds, str):
            seeds = [s for s in re.split(r"\s+", seeds) if s]
        max_pages = body.get("max_pages") if isinstance(body, dict) else None
        if not isinstance(seeds, list) or not seeds or not all(isinstance(s, str) and s.strip() for s in seeds):
            return JSONResponse({"error": "seeds must be a non-empty list of URLs or paths"}, 400)
        if max_pages in ("", None):
            max_pages = None
        elif isinstance(max_pages, str) and max_pages.isdigit():
            max_pages = int(max_pages)
        if max_pages is not None and (isinstance(max_pages, bool) or not isinstance(max_pages, int)
                                      or not 1 <= max_pages <= 1_000_000):
            return JSONResponse({"error": "max_pages must be a whole number from 1"}, 400)
        unknown = sorted(set(body) - {"seeds", "max_pages"})
        if unknown:
            return JSONResponse({"error": f"unknown field(s) {', '.join(unknown)}"}, 400)
        job = jobs.start([s.strip() for s in seeds], max_pages)
        return JSONResponse({"id": job.id, "progress": f"/api/jobs/{job.id}"}, 202)

    async def api_job(request: Request):
        job = jobs.jobs.get(request.path_params["job_id"])
        if job is None:
            return JSONResponse({"error": "no such job"}, 404)

        async def events():
            i = 0
            while True:
                while i < len(job.events):
                    ev = job.events[i]
                    i += 1
                    yield sse("progress" if ev["stage"] in ("crawl", "index", "done") else ev["stage"], ev)
                if job.done and i >= len(job.events):
                    return
                await asyncio.sleep(0.25)
        return EventStream(events())

    async def openapi(request: Request):
        return JSONResponse(OPENAPI)

    async def not_found(request: Request, exc):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": "not found"}, 404)
        return page(request, "error.html", 404, title="Not found", message=f"Nothing at {request.url.path}.")

    async def server_error(request: Request, exc):
        if request.url.path.startswith("/api/"):
            return JSONResponse({"error": f"internal error: {type(exc).__name__}"}, 500)
        return page(request, "error.html", 500, title="Something went wrong",
                    message=f"{type(exc).__name__}: {exc}")

    async def method_not_allowed(request: Request, exc):
        return JSONResponse({"error": f"{request.method} not allowed here"}, 405)

    routes = [
        Route("/", home), Route("/sources", sources), Route("/eval", eval_page, methods=["GET", "POST"]),
        Route("/api/search", api_search), Route("/api/ask", api_ask), Route("/api/status", api_status),
        Route("/api/jobs", api_jobs_post, methods=["POST"]), Route("/api/jobs/{job_id}", api_job),
        Route("/openapi.json", openapi),
        Mount("/static", StaticFiles(directory=os.path.join(HERE, "static")), name="static"),
    ]
    def warm_up() -> None:  # load the index and embedder (and the answer models) now, not on first use
        try:
            engine.search("warm up", k=1)
        except FathomError:
            return
        if warm_models:
            try:
                took = engine.warm()
            except FathomError as exc:
                log(f"fathom: answer models not loaded up front: {exc}")
                return
            log("fathom: models loaded up front: " + (", ".join(f"{m} {s:.1f}s" for m, s in took.items())
                                                      or "none could load (answers will be extractive)"))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        threading.Thread(target=warm_up, daemon=True, name="warm-up").start()
        yield
        jobs.stop()

    app = Starlette(routes=routes, exception_handlers={404: not_found, 405: method_not_allowed, 500: server_error},
                    lifespan=lifespan)
    app.state.engine, app.state.jobs, app.state.queue = engine, jobs, queue
    if jobs_file:
        jobs.run_due_forever()
    return Guard(app, bound_host)


def serve(engine, host: str = "127.0.0.1", port: int = 8000, jobs_file: str | None = None,
          log: Callable[[str], None] = print, warm_models: bool = True) -> None:
    import uvicorn

    app = create_app(engine, host, jobs_file, log, warm_models)
    log(f"fathom: serving {engine.data_dir} on http://{'[' + host + ']' if ':' in host else host}:{port}/ "
        f"(Ctrl-C stops)")
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)


_ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
OPENAPI = {
    "openapi": "3.0.3",
    "info": {"title": "Fathom", "version": "0.1.0",
             "description": "Local search and cited answers over the sites you crawl. Binds 127.0.0.1; "
                            "POSTs must be same-origin (Origin header) or carry a JSON body."},
    "paths": {
        "/api/search": {"get": {
            "summary": "Hybrid search (the JSON of `fathom search --json`)",
            "parameters": [
                {"name": "q", "in": "query", "required": True, "schema": QUERY_SCHEMA},
                {"name": "k", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": 100, "default": 10}}],
            "responses": {"200": {"description": "hits", "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/SearchResult"}}}},
                "400": _ERROR, "503": _ERROR}}},
        "/api/ask": {"get": {
            "summary": "A cited answer as server-sent events",
            "description": "Events: `queue` {position} while other answers generate, `start`, `token` "
                           "(a JSON string of new text) as it arrives, then one `answer` whose data is the "
                           "Answer JSON of `fathom ask --json` with per-sentence support; `failure` {error} "
                           "on an error.",
            "parameters": [
                {"name": "q", "in": "query", "required": True, "schema": QUERY_SCHEMA},
                {"name": "mode", "in": "query", "required": False,
                 "schema": {"type": "string", "enum": list(MODES), "default": "auto"}}],
            "responses": {"200": {"description": "event stream",
                                  "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                          "400": _ERROR}}},
        "/api/status": {"get": {
            "summary": "What is crawled and indexed, the index settings, queue and jobs",
            "responses": {"200": {"description": "status", "content": {"application/json": {
                "schema": {"type": "object", "required": ["data_dir", "crawl", "index"],
                           "properties": {"data_dir": {"type": "string"},
                                          "crawl": {"type": "object", "nullable": True},
                                          "index": {"type": "object", "nullable": True},
                                          "answers_queued": {"type": "integer"},
                                          "jobs": {"type": "array", "items": {"type": "object"}},
                                          "sites": {"type": "array", "items": {"type": "object"}}}}}}}}}},
        "/api/jobs": {"post": {
            "summary": "Start a crawl + index job",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["seeds"], "additionalProperties": False,
                "properties": {"seeds": {"type": "array", "minItems": 1,
                                         "items": {"type": "string", "minLength": 1}},
                               "max_pages": {"type": "integer", "minimum": 1, "maximum": 1000000,
                                             "nullable": True}}}}}},
            "responses": {"202": {"description": "started", "content": {"application/json": {"schema": {
                "type": "object", "required": ["id", "progress"],
                "properties": {"id": {"type": "string"}, "progress": {"type": "string"}}}}}},
                "400": _ERROR, "403": _ERROR}}},
        "/api/jobs/{job_id}": {"get": {
            "summary": "Progress of a job as server-sent events",
            "description": "Events: `progress` {stage: crawl|index|done, counts | done/total/rate}, then "
                           "`finished` {report, exit_code} or `failed` {error}.",
            "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}],
            "responses": {"200": {"description": "event stream",
                                  "content": {"text/event-stream": {"schema": {"type": "string"}}}},
                          "404": _ERROR}}},
    },
    "components": {"schemas": {
        "Error": {"type": "object", "required": ["error"], "properties": {"error": {"type": "string"}}},
        "Hit": {"type": "object", "required": ["url", "title", "score", "snippet"], "properties": {
            "url": {"type": "string"}, "title": {"type": "string"}, "score": {"type": "number"},
            "snippet": {"type": "string"}, "heading": {"type": "string"},
            "bm25_rank": {"type": "integer", "nullable": True}, "bm25_score": {"type": "number", "nullable": True},
            "dense_rank": {"type": "integer", "nullable": True}, "dense_score": {"type": "number", "nullable": True},
            "rerank_rank": {"type": "integer", "nullable": True},
            "rerank_score": {"type": "number", "nullable": True}}},
        "SearchResult": {"type": "object", "required": ["hits", "timings_ms", "notes"], "properties": {
            "hits": {"type": "array", "items": {"$ref": "#/components/schemas/Hit"}},
            "timings_ms": {"type": "object", "additionalProperties": {"type": "number"}},
            "notes": {"type": "array", "items": {"type": "string"}}}},
    }},
}

__all__ = ["OPENAPI", "create_app", "serve"]
