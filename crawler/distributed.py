"""A crawl shared by several processes through Redis (scrapy-redis): one request queue, one
seen-set, and the state Fathom adds so the processes behave like one polite crawler.

Each process writes the pages it fetched to its OWN store (a DuckDB file is single-writer, and
a crawler on another machine cannot reach this machine's file); Redis decides which process
stores which page, so the stores are disjoint and their union is what one process would have
stored. `fathom index --store OTHER.duckdb` indexes several stores together.

Redis keys of a job (`fathom:JOB:...`):
- `requests`, `dupefilter`: scrapy-redis' queue (a sorted set) and seen-set of fingerprints;
- `taken`: encoded request -> worker, for the instant between taking it from the queue and
  recording it in `inflight` (both Redis steps are atomic scripts, so a kill loses nothing);
- `inflight`: url -> worker that took the request from the queue; cleared once the worker's
  store has committed the outcome, so a killed worker's requests are not lost: it re-queues
  its own on restart, and a live worker adopts those of a worker whose heartbeat expired;
- `worker:ID`: heartbeat with a TTL;
- `owner`, `claimed-via`, `content`, `sim`, `band:I:V`: which worker stores a canonical URL (and
  the URL it was fetched as, so a dead worker's uncommitted claims can be released), the URL that owns
  an exact text (content hash), SimHash fingerprints in bands for the near-duplicate search;
- `lease:HOST`, `next:HOST`: per-host request leases and the earliest next request time, so
  `concurrency_per_host` and Crawl-delay hold across all processes, not per process.
"""
from __future__ import annotations

import json
import os
import socket
import time

from scrapy_redis.scheduler import Scheduler as RedisScheduler

from core.errors import CrawlError

# ---------------------------------------------------------------------------------------------
# settings


def frontier_settings(redis_url: str, job: str) -> dict:
    """Scrapy settings that swap the scheduler and dupefilter for scrapy-redis ones on `redis_url`."""
    prefix = key_prefix(job)
    return {
        "SCHEDULER": "crawler.distributed.SharedScheduler",
        "DUPEFILTER_CLASS": "scrapy_redis.dupefilter.RFPDupeFilter",
        "SCHEDULER_PERSIST": True,  # other processes still crawl when this one closes
        "SCHEDULER_QUEUE_KEY": prefix + "requests",
        "SCHEDULER_DUPEFILTER_KEY": prefix + "dupefilter",
        "SCHEDULER_QUEUE_CLASS": "scrapy_redis.queue.PriorityQueue",  # a sorted set: SharedCrawl.pop
        "DUPEFILTER_KEY": prefix + "dupefilter",
        "REDIS_URL": redis_url,
        "FATHOM_FRONTIER": redis_url,
        "FATHOM_JOB": job,
        # pacing is shared in Redis (SharedHostSlots): AutoThrottle would adjust each process's
        # own slot delay on top of it (CrawlConfig refuses autothrottle with a frontier)
        "AUTOTHROTTLE_ENABLED": False,
    }


def key_prefix(job: str) -> str:
    return f"fathom:{job}:"


def connect(redis_url: str):
    """A Redis client for `redis_url`, checked with a PING; CrawlError when unreachable."""
    import redis
    try:
        client = redis.Redis.from_url(redis_url, socket_timeout=10, socket_connect_timeout=5)
        client.ping()
    except (redis.RedisError, ValueError) as exc:
        raise CrawlError(f"frontier {redis_url}: cannot reach Redis ({exc})") from None
    return client


def worker_id(store_path: str) -> str:
    """A stable id for the process writing `store_path` on this host (a restart gets the same one)."""
    return f"{socket.gethostname()}:{os.path.abspath(store_path)}"


# ---------------------------------------------------------------------------------------------
# scheduler: remembers which worker took each request


class SharedScheduler(RedisScheduler):
    """scrapy-redis' scheduler made safe against a kill at any instant: a request is marked seen
    and queued in one step, and taken from the queue together with a record of which worker took
    it (`taken`, the encoded request), which becomes the `inflight` entry once decoded. Without
    this a worker killed between the two Redis calls loses the request for every worker."""

    def enqueue_request(self, request):
        shared = getattr(self.spider, "shared", None)
        if shared is None:
            return super().enqueue_request(request)
        fingerprint = "" if request.dont_filter else self.df.request_fingerprint(request)
        if not shared.enqueue(fingerprint, -request.priority, self.queue._encode_request(request)):
            self.df.log(request, self.spider)
            return False
        if self.stats:
            self.stats.inc_value("scheduler/enqueued/redis", spider=self.spider)
        return True

    def next_request(self):
        shared = getattr(self.spider, "shared", None)
        if shared is None:
            return super().next_request()
        data = shared.pop()
        if data is None:
            return None
        request = self.queue._decode_request(data)
        shared.took(request.meta.get("fathom_url"), request.meta.get("depth", 0), data)
        if self.stats:
            self.stats.inc_value("scheduler/dequeued/redis", spider=self.spider)
        return request


# ---------------------------------------------------------------------------------------------
# shared state


_ACQUIRE = """
-- KEYS[1] lease set (token -> expiry), KEYS[2] next-request time; ARGV now, ttl, limit, delay, token
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local nxt = tonumber(redis.call('GET', KEYS[2]) or '0')
if nxt > now then return tostring(nxt - now) end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[3]) then return '-1' end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[5])
redis.call('EXPIRE', KEYS[1], math.ceil(tonumber(ARGV[2])) + 60)
if tonumber(ARGV[4]) > 0 then
  redis.call('SET', KEYS[2], tostring(now + tonumber(ARGV[4])), 'EX', math.ceil(tonumber(ARGV[4])) + 60)
end
return '0'
"""

_ENQUEUE = """
-- KEYS[1] seen-set, KEYS[2] queue; ARGV fingerprint ('' when not filtered), score, request
if ARGV[1] ~= '' and redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
"""

_POP = """
-- KEYS[1] queue, KEYS[2] taken (request -> worker, score); ARGV worker
local top = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #top == 0 then return false end
redis.call('ZREM', KEYS[1], top[1])
redis.call('HSET', KEYS[2], top[1], cjson.encode({ARGV[1], top[2]}))
return top[1]
"""


class SharedCrawl:
    """This worker's view of the shared crawl job in Redis."""

    def __init__(self, redis_url: str, job: str, worker: str, near_bits: int, heartbeat_ttl_s: float = 6.0):
        self.r = connect(redis_url)
        self.p = key_prefix(job)
        self.worker = worker
        self.near_bits = near_bits
        self.ttl = heartbeat_ttl_s
        self._acquire = self.r.register_script(_ACQUIRE)
        self._enqueue = self.r.register_script(_ENQUEUE)
        self._pop = self.r.register_script(_POP)

    # --- liveness and in-flight requests ---------------------------------------------------
    def beat(self) -> None:
        self.r.set(self.p + "worker:" + self.worker, str(os.getpid()), px=int(self.ttl * 1000))

    def leave(self) -> None:
        self.r.delete(self.p + "worker:" + self.worker)

    # --- the shared queue --------------------------------------------------------------------
    def enqueue(self, fingerprint: str, score: float, data: bytes) -> bool:
        """Queue the encoded request `data` unless `fingerprint` is already in the seen-set
        ('' skips the check); one atomic step. False when it was seen."""
        return bool(self._enqueue(keys=[self.p + "dupefilter", self.p + "requests"], args=[fingerprint, score, data]))

    def pop(self) -> bytes | None:
        """Take the first queued request for this worker, recorded in `taken` in the same step."""
        return self._pop(keys=[self.p + "requests", self.p + "taken"], args=[self.worker])

    def took(self, url: str | None, depth: int, data: bytes | None = None) -> None:
        """`url` is in flight at this worker, replacing the `taken` record of `data` (a request
        with no page URL, a sitemap, is only dropped from `taken`)."""
        pipe = self.r.pipeline()
        if url:
            pipe.hset(self.p + "inflight", url, json.dumps([self.worker, depth]))
        if data is not None:
            pipe.hdel(self.p + "taken", data)
        pipe.execute()

    def committed(self, urls: list[str]) -> None:
        """The store has committed the outcome of `urls`: they are no longer in flight here."""
        if not urls:
            return
        key = self.p + "inflight"
        mine = [u for u, v in zip(urls, self.r.hmget(key, urls)) if v is not None and json.loads(v)[0] == self.worker]
        if mine:
            self.r.hdel(key, *mine)

    def _inflight(self) -> dict[str, tuple[str, int]]:
        return {k.decode(): tuple(json.loads(v)) for k, v in self.r.hgetall(self.p + "inflight").items()}

    def _alive(self, worker: str) -> bool:
        return worker == self.worker or bool(self.r.exists(self.p + "worker:" + worker))

    def _orphaned(self, worker: str, include_own: bool) -> bool:
        return include_own if worker == self.worker else not self._alive(worker)

    def reclaim(self, include_own: bool) -> list[tuple[str, int]]:
        """Take over in-flight requests of dead workers (and this worker's own, left by a kill of
        an earlier run, with `include_own`): (url, depth) pairs to request again. HDEL decides
        which live worker gets each one. Requests such a worker took from the queue but had not
        yet decoded go back to the queue as they were."""
        for data, value in self.r.hgetall(self.p + "taken").items():
            worker, score = json.loads(value)
            if self._orphaned(worker, include_own) and self.r.hdel(self.p + "taken", data):
                self.r.zadd(self.p + "requests", {data: float(score)})
        out = []
        for url, (worker, depth) in self._inflight().items():
            if self._orphaned(worker, include_own) and self.r.hdel(self.p + "inflight", url):
                out.append((url, depth))
                self._release_claim(url, worker)  # another worker may take the request from the queue
        return out

    def _release_claim(self, fetched_url: str, worker: str) -> None:
        """A dead worker's claim on the page it fetched as `fetched_url` was never committed to
        its store (the request was still in flight), so whoever fetches it again may store it."""
        canonical = self.r.hget(self.p + "claimed-via", fetched_url)
        if canonical is not None and self.r.hget(self.p + "owner", canonical) == worker.encode():
            self.r.hdel(self.p + "owner", canonical)

    def busy(self) -> bool:
        """Whether the job still has work: queued requests, or requests in flight at a live worker."""
        if self.r.zcard(self.p + "requests"):
            return True
        taken = [json.loads(v)[0] for v in self.r.hvals(self.p + "taken")]
        return any(self._alive(w) for w in [*taken, *(w for w, _ in self._inflight().values())])

    def finish(self) -> None:
        """The job is done: drop its frontier (queue, seen-set, in-flight), so running the same
        command again recrawls. Who stores which page stays."""
        self.r.delete(self.p + "requests", self.p + "dupefilter", self.p + "inflight", self.p + "taken")

    # --- politeness across processes ---------------------------------------------------------
    def acquire(self, host: str, limit: int, delay_s: float, ttl_s: float, token: str) -> float:
        """Try to take one of `limit` request leases on `host`; 0.0 when taken, otherwise the
        seconds to wait before trying again."""
        wait = float(self._acquire(keys=[self.p + "lease:" + host, self.p + "next:" + host],
                                   args=[time.time(), ttl_s, limit, delay_s, token]))
        return 0.0 if wait == 0 else (0.01 if wait < 0 else wait)

    def release(self, host: str, token: str) -> None:
        self.r.zrem(self.p + "lease:" + host, token)

    # --- which worker stores which page -------------------------------------------------------
    def claim(self, url: str, fetched_url: str, content_hash: str, simhash: int | None,
              new_here: bool) -> tuple[str | None, str | None]:
        """(reason, owner) as DuplicatesPipeline returns it, decided across all workers: the page
        is stored by another worker ("other_worker"), its exact text is another URL's ("duplicate"),
        or a new page is within near_bits of another's SimHash ("near_duplicate"); otherwise it
        is claimed for this worker and (None, None) comes back."""
        with self.r.lock(self.p + "claim-lock", timeout=10, sleep=0.002, blocking_timeout=30):
            owner = self.r.hget(self.p + "owner", url)
            if owner is not None and owner.decode() != self.worker:
                return "other_worker", None
            text_owner = self.r.hget(self.p + "content", content_hash)
            if text_owner is not None and text_owner.decode() != url:
                return "duplicate", text_owner.decode()
            if self.near_bits >= 0 and new_here and owner is None and simhash is not None:
                near = self._nearest(simhash, url)
                if near is not None:
                    return "near_duplicate", near
            pipe = self.r.pipeline()
            pipe.hset(self.p + "owner", url, self.worker)
            pipe.hset(self.p + "claimed-via", fetched_url, url)
            pipe.hsetnx(self.p + "content", content_hash, url)
            if simhash is not None:
                pipe.hset(self.p + "sim", url, str(simhash))
                for band in self._bands(simhash):
                    pipe.sadd(band, url)
            pipe.execute()
        return None, None

    def _bands(self, simhash: int) -> list[str]:
        """Band keys of `simhash`: with near_bits + 1 bands, two fingerprints within near_bits
        agree exactly on at least one band (pigeonhole). Past 15 bits there is one key (scan all)."""
        value = simhash & (2**64 - 1)
        n = self.near_bits + 1
        if not 1 <= n <= 16:
            return [self.p + "band:all"]
        width = 64 // n
        keys = []
        for i in range(n):
            lo = i * width
            hi = 64 if i == n - 1 else lo + width
            keys.append(f"{self.p}band:{i}:{(value >> lo) & ((1 << (hi - lo)) - 1)}")
        return keys

    def _nearest(self, simhash: int, url: str) -> str | None:
        candidates = [c.decode() for c in self.r.sunion(self._bands(simhash))]
        candidates = [c for c in candidates if c != url]
        if not candidates:
            return None
        best = None
        value = simhash & (2**64 - 1)
        for cand, sim in zip(candidates, self.r.hmget(self.p + "sim", candidates)):
            if sim is None:
                continue
            dist = (int(sim) & (2**64 - 1) ^ value).bit_count()
            if dist <= self.near_bits and (best is None or (dist, cand) < best):
                best = (dist, cand)
        return None if best is None else best[1]


# ---------------------------------------------------------------------------------------------
# downloader middleware


class SharedHostSlots:
    """Holds a Redis lease on the request's host while it is downloaded, so that all crawler
    processes together keep to CONCURRENT_REQUESTS_PER_DOMAIN and the host's delay (DOWNLOAD_DELAY
    or robots.txt Crawl-delay). A killed process's leases expire after the download timeout.
    Ordered last before the downloader: a request waiting here has not reached the server."""

    def __init__(self, crawler):
        from scrapy.exceptions import NotConfigured
        if not crawler.settings.get("FATHOM_FRONTIER"):
            raise NotConfigured
        self.crawler = crawler
        self.limit = crawler.settings.getint("CONCURRENT_REQUESTS_PER_DOMAIN")
        self.ttl = crawler.settings.getfloat("DOWNLOAD_TIMEOUT") + 10
        self.serial = 0
        self.delays: dict[str, float] = {}  # slot key -> seconds between requests to it, all processes

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    async def process_request(self, request):
        from scrapy.utils.asyncio import sleep
        from urllib.parse import urlsplit

        shared = self.crawler.spider.shared
        downloader = self.crawler.engine.downloader
        key = downloader.get_slot_key(request)
        slot = downloader.slots.get(key)
        robots = request.meta.get("dont_obey_robotstxt") and request.url.endswith("/robots.txt")
        if robots:
            pass  # fetched before the host's Crawl-delay is known; not paced, and the delay not read yet
        elif key not in self.delays:
            # slots are created lazily after the middlewares: a robots.txt Crawl-delay may so far be
            # only in per_slot_settings (crawler.politeness.CrawlDelayMiddleware sets both)
            self.delays[key] = slot.delay if slot is not None else downloader.per_slot_settings.get(key, {}).get(
                "delay", self.crawler.settings.getfloat("DOWNLOAD_DELAY"))
            # the pacing happens here, across processes; a local slot delay on top would hold the
            # request after its turn was taken and let another process's request follow too soon
            downloader.per_slot_settings.setdefault(key, {}).update(delay=0.0, jitter=0.0)
            if slot is not None:
                slot.delay, slot.jitter = 0.0, 0.0
        delay = 0.0 if robots else self.delays[key]
        host = urlsplit(request.url).netloc
        self.serial += 1
        token = f"{shared.worker}:{os.getpid()}:{self.serial}"
        while True:
            wait = shared.acquire(host, self.limit, delay, self.ttl, token)
            if wait == 0.0:
                break
            await sleep(min(wait, 1.0))
        request.meta["fathom_lease"] = (host, token)
        return None

    def _release(self, request) -> None:
        lease = request.meta.pop("fathom_lease", None)
        if lease is not None:
            self.crawler.spider.shared.release(*lease)

    def process_response(self, request, response):
        self._release(request)
        return response

    def process_exception(self, request, exception):
        self._release(request)
        return None
