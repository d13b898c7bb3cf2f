"""``toolkit search``: dry runs, output shapes, errors, and no torch on the text path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.escluster.testing import call
from toolkit.cli import app
from toolkit.errors import NotFound, ValidationError
from toolkit.search import SearchOptions, text_query
from toolkit.settings import ENV_VARS, load_settings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    for var in [*ENV_VARS, "TOOLKIT_CONFIG"]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


def invoke(*args):
    return CliRunner().invoke(app, ["search", *args])


def console_requests(text: str) -> list[tuple[str, str, dict | None]]:
    """(method, path, body) of each request in Kibana console text (``#`` comments skipped)."""
    out = []
    for block in text.strip().split("\n\n"):
        lines = [line for line in block.splitlines() if not line.startswith("#")]
        method, target = lines[0].split(" ", 1)
        out.append((method, target, json.loads("\n".join(lines[1:])) if len(lines) > 1 else None))
    return out


def test_dry_run_prints_the_request_and_needs_no_cluster():
    result = invoke("ein Hund im Schnee", "-k", "3", "--filter", "label=dog", "--min-similarity", "0.2",
                    "--dry-run", "--show-request", "--es-url", "http://127.0.0.1:9")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# text search: kNN on image_embedding")
    expected = text_query("ein Hund im Schnee", load_settings(environ={}),
                          SearchOptions(k=3, filters=("label=dog",), min_similarity=0.2))
    assert console_requests(result.stdout) == [("POST", "images/_search", expected.body)]


def test_dry_run_json():
    result = invoke("a cat", "--hybrid", "--no-rrf", "--index", "photos", "--dry-run", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["kind"] == "text" and data["mode"] == "boosted_sum" and data["index"] == "photos"
    [request] = data["requests"]
    assert request["method"] == "POST" and request["path"] == "photos/_search"
    assert isinstance(request["body"]["knn"], list)


@pytest.mark.parametrize(("args", "error", "words"), [
    (["x", "--filter", "label"], ValidationError, "--filter"),
    (["", "--dry-run"], ValidationError, "empty"),
    (["x", "--like", "d1", "--dry-run"], ValidationError, "exactly one"),
    (["x", "-k", "0", "--dry-run"], ValidationError, "-k"),
    (["--like", "d1", "--hybrid", "--dry-run"], ValidationError, "TEXT"),
])
def test_bad_input_fails_with_the_fix(args, error, words):
    result = invoke(*args)
    assert result.exit_code == error.exit_code, result.output
    assert words in result.output


def test_missing_image_file():
    result = invoke("--image", "nope.jpg", "--dry-run")
    assert result.exit_code != 0
    assert "nope.jpg: file not found" in result.output


def test_the_text_path_never_imports_torch():
    driver = (
        "import sys\n"
        "from toolkit.cli import app\n"
        "try:\n"
        "    app(['search', 'a dog in the snow', '--dry-run', '--show-request', '--hybrid'])\n"
        "except SystemExit as exc:\n"
        "    assert not exc.code, exc.code\n"
        "heavy = [m for m in ('torch', 'transformers', 'sentence_transformers', 'eland', 'PIL', 'numpy')\n"
        "         if m in sys.modules]\n"
        "print('HEAVY=' + ','.join(heavy))\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ENV_VARS}
    proc = subprocess.run([sys.executable, "-c", driver], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "POST images/_search" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "HEAVY="


# -------------------------------------------------------------------------- against the test cluster


@pytest.fixture
def cluster_with_docs(escluster_factory):
    """A basic-license cluster, 4-dim vectors: --like needs no ML and no local model."""
    es = escluster_factory(license="basic")
    vec = {"type": "dense_vector", "dims": 4, "similarity": "cosine", "index": True}
    r = call(es.url, "PUT", "/pics-000001", {"aliases": {"pics": {}}, "mappings": {"properties": {
        "image_embedding": vec, "caption": {"type": "text"}, "path": {"type": "keyword"},
        "url": {"type": "keyword"}, "relation_id": {"type": "keyword"}}}})
    assert r.status == 200, r.body
    docs = {"a": ([1, 0, 0, 0], "a [bold]red[/] car", {"path": "/x/a.jpg"}),
            "b": ([0.9, 0.1, 0, 0], "b", {"url": "https://example.org/b.jpg"}),
            "c": ([0, 1, 0, 0], "c", {}),
            "d": ([0.5, 0.5, 0, 0], "d", {})}
    for doc_id, (vector, caption, extra) in docs.items():
        r = call(es.url, "PUT", f"/pics/_doc/{doc_id}?refresh=true",
                 {"image_embedding": vector, "caption": caption, **extra})
        assert r.status in (200, 201), r.body
    return es


def test_like_table(cluster_with_docs):
    result = invoke("--like", "a", "--index", "pics", "-k", "2", "--es-url", cluster_with_docs.url,
                    "--config", str(_config(dims=4)))
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "like search on pics" in out and "2 hits" in out
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in out.splitlines()
            if line.startswith("│")]
    assert [row[0] for row in rows] == ["1", "2"]
    assert rows[0][2:] == ["b", "b", "https://example.org/b.jpg"] and rows[1][2] == "d"
    assert float(rows[0][1]) > float(rows[1][1])


def test_like_json_and_show_request(cluster_with_docs):
    result = invoke("--like", "b", "--index", "pics", "-k", "3", "--json", "--show-request",
                    "--es-url", cluster_with_docs.url, "--config", str(_config(dims=4)))
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"took_ms", "total", "hits", "kind", "mode", "index"}
    assert [h["id"] for h in data["hits"]] == ["a", "d", "c"]
    assert data["hits"][0]["source"] == {"caption": "a [bold]red[/] car", "path": "/x/a.jpg"}
    assert set(data["hits"][0]) == {"id", "score", "source"}
    assert "POST pics/_search" in result.stderr          # the request goes to stderr with --json


def test_index_missing(cluster_with_docs):
    result = invoke("--like", "a", "--index", "nope", "--es-url", cluster_with_docs.url)
    assert result.exit_code == NotFound.exit_code, result.output
    assert "toolkit setup" in result.output


def _config(dims: int) -> Path:
    path = Path.cwd() / "toolkit.yaml"
    path.write_text(f"index:\n  image_dims: {dims}\n", encoding="utf-8")
    return path


def test_show_request_keeps_a_line_break_of_the_query_inside_the_comment():
    for args in (["a dog\nDELETE images"], ["--like", "x\nDELETE images"]):
        result = invoke(*args, "--dry-run", "--show-request", "--es-url", "http://127.0.0.1:9")
        assert result.exit_code == 0, result.output
        assert not [ln for ln in result.stdout.splitlines() if ln.startswith("DELETE")], result.stdout
