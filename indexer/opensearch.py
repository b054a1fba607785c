"""Export an index to OpenSearch: the index body (settings + mapping: BM25 text fields and a
k-NN HNSW vector field) and the bulk-API body (NDJSON, an action line then a document line per
chunk), plus a validator that checks a bulk body against a mapping, since no OpenSearch runs here.

Load with:  curl -XPUT HOST/NAME -H 'Content-Type: application/json' --data-binary @FILE.mapping.json
            curl -XPOST HOST/_bulk -H 'Content-Type: application/x-ndjson' --data-binary @FILE.ndjson
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os

import numpy as np

from core.errors import ExportInvalid, FathomError

DATE_FIELDS = ("fetched_at", "changed_at", "modified_at")


def index_body(dim: int, m: int, ef_construction: int, ef_search: int) -> dict:
    """PUT /NAME body: strict mapping, BM25 on text fields, cosine HNSW (Lucene engine) on vectors."""
    text = {"type": "text", "analyzer": "english"}
    return {
        "settings": {"index": {"knn": True, "knn.algo_param.ef_search": ef_search}},
        "mappings": {
            "dynamic": "strict",
            "properties": {
                "url": {"type": "keyword"},
                "host": {"type": "keyword"},
                "title": text,
                "heading": text,
                "text": text,
                "position": {"type": "integer"},
                "lang": {"type": "keyword"},
                "content_hash": {"type": "keyword"},
                **{f: {"type": "date"} for f in DATE_FIELDS},
                "embedding": {"type": "knn_vector", "dimension": dim,
                              "method": {"name": "hnsw", "space_type": "cosinesimil", "engine": "lucene",
                                         "parameters": {"m": m, "ef_construction": ef_construction}}},
            },
        },
    }


def _iso(value: str) -> str | None:
    """An ISO 8601 date OpenSearch's default date format accepts, or None (field left out)."""
    if not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.timezone.utc)
    return parsed.isoformat(timespec="seconds")


def export(indexes: list, path: str, name: str = "fathom") -> dict:
    """Write `path` (bulk NDJSON) and `path` with .mapping.json (index body) for the chunks of
    `indexes` (HybridIndex objects: one, or every shard). Returns counts and the file names."""
    from urllib.parse import urlsplit
    if not indexes:
        raise FathomError("nothing to export: the index is empty")
    first = indexes[0].manifest
    body = index_body(first.embedder_dim, first.hnsw_m, first.ef_construction, first.ef_search)
    base = path[:-len(".ndjson")] if path.endswith(".ndjson") else path
    mapping_path = base + ".mapping.json"
    tmp = path + ".tmp"
    docs = 0
    with open(tmp, "w", encoding="utf-8") as f:
        for shard, index in enumerate(indexes):
            ids = sorted(index.chunks)
            vectors = np.asarray(index.dense.get_items(ids), np.float32) if ids else np.zeros((0, 0))
            for cid, vec in zip(ids, vectors):
                c = index.chunks[cid]
                doc = {"url": c.url, "host": urlsplit(c.url).netloc, "title": c.title, "heading": c.heading,
                       "text": c.text, "position": c.position, "lang": c.lang, "content_hash": c.content_hash}
                for field in DATE_FIELDS:
                    value = _iso(getattr(c, field, ""))
                    if value is not None:
                        doc[field] = value
                norm = float(np.linalg.norm(vec)) or 1.0
                doc["embedding"] = [round(float(x), 6) for x in vec / norm]
                # the id is stable across exports of the same chunk at the same place
                action = {"index": {"_index": name, "_id": f"{c.content_hash[:32]}-{shard}-{c.position}"}}
                f.write(json.dumps(action, ensure_ascii=False) + "\n")
                f.write(json.dumps(doc, ensure_ascii=False) + "\n")
                docs += 1
    os.replace(tmp, path)
    with open(mapping_path, "w", encoding="utf-8") as f:
        json.dump(body, f, indent=2)
    return {"documents": docs, "bulk": os.path.abspath(path), "mapping": os.path.abspath(mapping_path),
            "index": name}


def validate_bulk(path: str, body: dict) -> int:
    """Check the bulk NDJSON at `path` against an index `body` (as index_body returns): every
    action is `index` with an _id, every document has only mapped fields of the mapped types,
    vectors have the mapped dimension and finite values. Returns the number of documents;
    ExportInvalid names the first line that does not fit."""
    props = body["mappings"]["properties"]
    strict = body["mappings"].get("dynamic") == "strict"
    ids: set[str] = set()
    docs = 0
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    else:
        raise ExportInvalid(f"{path}: a bulk body must end with a newline")
    if len(lines) % 2:
        raise ExportInvalid(f"{path}: {len(lines)} lines; a bulk body has an action line per document line")
    for n in range(0, len(lines), 2):
        where = f"{path}:{n + 1}"
        try:
            action, doc = json.loads(lines[n]), json.loads(lines[n + 1])
        except json.JSONDecodeError as exc:
            raise ExportInvalid(f"{where}: not JSON ({exc})") from None
        if list(action) != ["index"] or not isinstance(action["index"].get("_id"), str):
            raise ExportInvalid(f"{where}: expected {{\"index\": {{\"_index\", \"_id\"}}}}, got {action}")
        if action["index"]["_id"] in ids:
            raise ExportInvalid(f"{where}: duplicate _id {action['index']['_id']}")
        ids.add(action["index"]["_id"])
        for key, value in doc.items():
            spec = props.get(key)
            if spec is None:
                if strict:
                    raise ExportInvalid(f"{path}:{n + 2}: field {key!r} is not in the strict mapping")
                continue
            problem = _type_problem(value, spec)
            if problem:
                raise ExportInvalid(f"{path}:{n + 2}: field {key!r}: {problem}")
        docs += 1
    return docs


def _type_problem(value, spec: dict) -> str:
    kind = spec["type"]
    if kind in ("text", "keyword"):
        return "" if isinstance(value, str) else f"expected a string, got {type(value).__name__}"
    if kind == "integer":
        ok = isinstance(value, int) and not isinstance(value, bool) and -2**31 <= value < 2**31
        return "" if ok else f"expected a 32-bit integer, got {value!r}"
    if kind == "date":
        if not isinstance(value, str):
            return f"expected an ISO date string, got {value!r}"
        try:
            dt.datetime.fromisoformat(value)
        except ValueError:
            return f"not an ISO 8601 date: {value!r}"
        return ""
    if kind == "knn_vector":
        if not isinstance(value, list) or len(value) != spec["dimension"]:
            got = len(value) if isinstance(value, list) else type(value).__name__
            return f"expected {spec['dimension']} numbers, got {got}"
        if not all(isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x) for x in value):
            return "vector has a value that is not a finite number"
        if spec["method"]["space_type"] == "cosinesimil" and not any(value):
            return "a zero vector has no cosine similarity"
        return ""
    return f"unchecked mapping type {kind!r}"
