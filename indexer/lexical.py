"""The lexical side: a tantivy BM25 index over chunks (English stemming).

Schema 2: title, heading and body are stemmed English text with positions (identifiers such
as pg_stat_activity become phrase queries). chunk_id is the only stored field (the chunk
table holds the rest). url and host are raw terms for the prefix and host filters, lang a raw
primary subtag, and changed_at / fetched_at / modified_at indexed fast date fields for date
ranges; filters run inside the tantivy query, before the top hits are taken."""
from __future__ import annotations

import datetime as dt
import errno
import os
import re
import shutil
import tempfile
import weakref
from urllib.parse import urlsplit

import tantivy

from core.errors import IndexCorrupt, QueryError
from indexer.chunking import Chunk
from indexer.filtering import DATE_FIELDS, date_bounds, lang_key, parse_date

SCHEMA_VERSION = 2  # 2: date and lang fields, url no longer stored
TEXT_FIELDS = ("title", "heading", "body")
FIELD_BOOSTS = {"title": 2.0, "heading": 1.5, "body": 1.0}
MAX_QUERY_TERMS = 64
_DATE_MIN = dt.datetime(1677, 9, 22, tzinfo=dt.timezone.utc)
_DATE_MAX = dt.datetime(2262, 4, 11, tzinfo=dt.timezone.utc)
_TERM = re.compile(r"\w+", re.UNICODE)


def schema() -> tantivy.Schema:
    b = tantivy.SchemaBuilder()
    b.add_integer_field("chunk_id", stored=True, indexed=True, fast=True)
    b.add_text_field("url", stored=False, tokenizer_name="raw", index_option="basic")
    b.add_text_field("host", stored=False, tokenizer_name="raw", fast=True, index_option="basic")
    b.add_text_field("lang", stored=False, tokenizer_name="raw", index_option="basic")
    for name in DATE_FIELDS:
        b.add_date_field(name, stored=False, indexed=True, fast=True)
    for name in TEXT_FIELDS:
        b.add_text_field(name, stored=False, tokenizer_name="en_stem")
    return b.build()


def write_lexical(directory: str, chunks: list[Chunk], heap_bytes: int = 64_000_000) -> None:
    """Index `chunks` into a new tantivy index in `directory`."""
    index = tantivy.Index(schema(), path=directory, reuse=False)
    writer = index.writer(heap_size=heap_bytes, num_threads=1)
    for c in chunks:
        doc = tantivy.Document(chunk_id=c.chunk_id, url=c.url, host=urlsplit(c.url).netloc,
                               lang=lang_key(c.lang), title=c.title, heading=c.heading, body=c.text)
        for name in DATE_FIELDS:
            try:
                when = parse_date(getattr(c, name))
            except ValueError:
                when = None  # an unparsable date is left out, like a missing one
            if when is not None and _DATE_MIN <= when <= _DATE_MAX:  # tantivy's range (nanoseconds in i64)
                doc.add_date(name, when)
        writer.add_document(doc)
    try:
        writer.commit()
        writer.wait_merging_threads()
    except ValueError as exc:  # tantivy edge: it reports a failed write (disk full) as ValueError
        code = errno.ENOSPC if "os error 28" in str(exc) else errno.EIO
        raise OSError(code, f"tantivy could not write {directory}: {exc}") from None


def query_terms(text: str) -> list[str]:
    """Plain word terms of a user query: no query syntax survives, so nothing can fail to parse."""
    return _TERM.findall(text.lower())[:MAX_QUERY_TERMS]


def open_tantivy(directory: str, owner: object, what: str = "tantivy index") -> tantivy.Index:
    """Open a tantivy index for reading. tantivy takes a lock file even to read: on a read-only
    data directory the index is read from a private temporary copy, removed when `owner` goes.
    A damaged index is IndexCorrupt naming the directory."""
    try:
        return tantivy.Index.open(directory)
    except (ValueError, OSError, RuntimeError) as exc:  # tantivy edge: a damaged index is ValueError
        if "ReadOnlyFilesystem" not in str(exc) and "PermissionDenied" not in str(exc):
            raise IndexCorrupt(f"cannot open {what} in {directory}: {exc}; "
                               "run `fathom index --rebuild`") from None
    copy_dir = tempfile.mkdtemp(prefix="fathom-ro-tantivy-")
    weakref.finalize(owner, shutil.rmtree, copy_dir, True)
    for name in os.listdir(directory):
        if not name.endswith(".lock"):
            shutil.copy2(os.path.join(directory, name), copy_dir)
    try:
        return tantivy.Index.open(copy_dir)
    except (ValueError, OSError, RuntimeError) as exc:
        raise IndexCorrupt(f"cannot open {what} in {directory}: {exc}; run `fathom index --rebuild`") from None


class LexicalIndex:
    """Read side of the tantivy index."""

    def __init__(self, directory: str):
        self.index = open_tantivy(directory, self)
        self.searcher = self.index.searcher()

    def search(self, text: str, limit: int, url_prefix: str = "", hosts: tuple[str, ...] = (),
               since: str = "", until: str = "", date_field: str = "changed_at",
               langs: tuple[str, ...] = (), boosts: dict[str, float] | None = None) -> list[tuple[int, float]]:
        """(chunk_id, bm25 score) best first; an empty list when no term matches. `url_prefix`,
        `hosts`, the date range `since`..`until` on `date_field` and `langs` filter inside
        tantivy, before the top `limit` are taken (semantics in indexer.filtering). `boosts`
        weighs the text fields (default FIELD_BOOSTS; a field at 0 is not searched)."""
        if date_field not in DATE_FIELDS:
            raise QueryError(f"date_field must be one of {DATE_FIELDS}, got {date_field!r}")
        lower, upper = date_bounds(since, until)
        if (lower is not None and lower > _DATE_MAX) or (upper is not None and upper < _DATE_MIN):
            return []  # no indexed date lies there
        lower = max(lower, _DATE_MIN) if lower is not None else None  # clamped into tantivy's range
        upper = min(upper, _DATE_MAX) if upper is not None else None
        terms = query_terms(text)
        if not terms or limit <= 0:
            return []
        boosts = boosts or FIELD_BOOSTS
        query, _errors = self.index.parse_query_lenient(" ".join(terms), [f for f in TEXT_FIELDS if boosts.get(f)],
                                                        field_boosts=boosts)
        schema = self.index.schema
        filters = []
        if url_prefix:
            filters.append(tantivy.Query.regex_query(schema, "url", re.escape(url_prefix) + ".*"))
        if hosts:
            filters.append(tantivy.Query.term_set_query(schema, "host", list(dict.fromkeys(hosts))))
        if lower is not None or upper is not None:
            filters.append(tantivy.Query.range_query(schema, date_field, tantivy.FieldType.Date, lower, upper,
                                                     include_lower=True, include_upper=upper is None))
        if langs:
            filters.append(tantivy.Query.term_set_query(schema, "lang", list(dict.fromkeys(map(lang_key, langs)))))
        if filters:  # scored 0: a filter never changes the BM25 score or order of what passes it
            query = tantivy.Query.boolean_query(
                [(tantivy.Occur.Must, query)]
                + [(tantivy.Occur.Must, tantivy.Query.const_score_query(f, 0.0)) for f in filters])
        try:  # tantivy edge: it reports unreadable segments as ValueError at search time
            result = self.searcher.search(query, limit)
            return [(int(self.searcher.doc(addr)["chunk_id"][0]), float(score)) for score, addr in result.hits]
        except ValueError as exc:
            raise IndexCorrupt(f"tantivy search failed, the index is damaged ({exc}); "
                               "run `fathom index --rebuild`") from None

    @property
    def num_docs(self) -> int:
        return self.searcher.num_docs
