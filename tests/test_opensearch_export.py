"""`fathom export --opensearch`: the bulk body validates against the mapping written beside it."""
import json

import pytest

from core.errors import ExportInvalid
from indexer.opensearch import validate_bulk


def test_export_writes_a_bulk_body_that_fits_its_mapping(built_engine, tmp_path):
    out = built_engine.export_opensearch(str(tmp_path / "docs.ndjson"), "garden")
    index = built_engine.open_index()
    assert out["documents"] == out["validated"] == len(index.chunks)
    body = json.load(open(out["mapping"]))
    props = body["mappings"]["properties"]
    assert body["settings"]["index"]["knn"] is True
    assert props["embedding"]["dimension"] == index.manifest.embedder_dim
    assert props["embedding"]["method"]["parameters"]["m"] == index.manifest.hnsw_m
    lines = open(out["bulk"]).read().splitlines()
    action, doc = json.loads(lines[0]), json.loads(lines[1])
    assert action["index"]["_index"] == "garden"
    assert doc["url"].startswith("http://") and doc["text"] and len(doc["embedding"]) == props["embedding"]["dimension"]
    assert abs(sum(x * x for x in doc["embedding"]) - 1.0) < 1e-3  # unit vectors for cosinesimil
    assert any(json.loads(line).get("url", "").endswith("tomatoes.html") for line in lines[1::2])


@pytest.mark.parametrize("change, message", [
    (lambda d: d.update(embedding=d["embedding"][:-1]), "expected 384 numbers"),
    (lambda d: d.update(extra="x"), "not in the strict mapping"),
    (lambda d: d.update(position="3"), "32-bit integer"),
    (lambda d: d.update(fetched_at="yesterday"), "not an ISO 8601 date"),
])
def test_validation_names_the_line_that_does_not_fit(built_engine, tmp_path, change, message):
    out = built_engine.export_opensearch(str(tmp_path / "docs.ndjson"))
    body = json.load(open(out["mapping"]))
    lines = open(out["bulk"]).read().splitlines()
    doc = json.loads(lines[3])
    change(doc)
    lines[3] = json.dumps(doc)
    bad = tmp_path / "bad.ndjson"
    bad.write_text("\n".join(lines) + "\n")
    with pytest.raises(ExportInvalid, match=rf"bad.ndjson:4: .*{message}"):
        validate_bulk(str(bad), body)


def test_cli_export(built_engine, tmp_path):
    from click.testing import CliRunner
    from fathom.cli import main
    result = CliRunner().invoke(main, ["--data", built_engine.data_dir, "export", "--opensearch",
                                       str(tmp_path / "x.ndjson"), "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["documents"] > 0
    assert (tmp_path / "x.mapping.json").exists()
