"""Items the spider hands to the pipelines."""
from __future__ import annotations


class PageItem(dict):
    """A fetched, extracted page on its way through the pipelines (a plain dict item):
    url (canonical), fetched_url, title, text, headings, lang, content_hash, simhash, minhash, body_hash,
    etag, last_modified, modified_at, status, size_bytes, elapsed_ms."""
