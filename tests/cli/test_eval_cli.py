"""``toolkit eval`` on the trained tiny models' shapes in the test cluster (see tests/lib/test_trained_models.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tests.lib.test_smoke import write_config
from tests.lib.test_trained_models import trained_config, trained_env
from tests.models.trained import TEMPLATES, labels, translation, write_translations
from toolkit.cli import app
from toolkit.errors import ValidationError
from toolkit.evaluate import Query, average_precision, percentile, precision_at, recall_at

runner = CliRunner()


@pytest.fixture(scope="module")
def env():
    return trained_env()


def invoke(env, tmp_path, *args):
    write_config(tmp_path, {k: v for k, v in trained_config(env.url).items() if k != "elasticsearch.url"})
    return runner.invoke(app, ["eval", "--es-url", env.url, *args])


@pytest.fixture(scope="module")
def report(env, tmp_path_factory):
    """One full run: manifest, the labels file (en/de/zh, 3 templates each), leave-one-out, JSON, PNG."""
    tmp = tmp_path_factory.mktemp("eval")
    import os

    os.chdir(tmp)
    result = invoke(env, tmp, str(env.folder / "manifest.csv"), "--labels", str(write_translations(tmp / "l.yaml")),
                    "--like", "-k", "3", "--sweep", "3,10,100", "--max-ann-queries", "40", "--json",
                    "--plot", str(tmp / "eval.png"))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), tmp


def test_eval_reports_every_figure_with_stable_keys(report):
    data, tmp = report
    assert set(data) == {"index", "k", "num_candidates", "items", "labels", "text", "image", "ann", "latency",
                         "skipped"}
    assert data["items"] == 36 and data["labels"] == 12 and data["k"] == 3 and data["num_candidates"] == 100
    for lang in ("en", "de", "zh"):
        figs = data["text"]["by_language"][lang]
        assert figs["queries"] == 36 and figs["recall_at_1"] >= 0.9
        assert set(figs) == {"queries", "recall_at_1", "recall_at_k", "precision_at_k", "map_at_k"}
    assert data["image"]["queries"] == 36 and set(data["image"]["by_label"]) == set(labels())
    # The test cluster's kNN is exact: the approximation loses nothing at any num_candidates.
    assert data["ann"]["recall_at_default"] == 1.0
    assert [s["num_candidates"] for s in data["ann"]["sweep"]] == [3, 10, 100]
    assert data["ann"]["queries"] == 36  # 108 prompts, every third one (at most 40)
    assert set(data["latency"]) == {"text", "image", "exact", "knn"}
    assert data["latency"]["text"]["queries"] == 108
    assert (tmp / "eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_precision_at_k_recomputed_from_raw_search_responses(env, report):
    """German precision@3 from hand-written _search bodies and the labels in the raw hits."""
    data, _ = report
    client = env.client
    total = 0.0
    prompts = [t.format(label=translation(lab, "de")) + "\t" + lab for lab in labels() for t in TEMPLATES["de"]]
    for line in prompts:
        prompt, label = line.split("\t")
        body = client.search(index="images", body={
            "size": 3, "_source": ["label"],
            "knn": {"field": "image_embedding", "k": 3, "num_candidates": 100, "query_vector_builder": {
                "text_embedding": {"model_id": "trained-text", "model_text": prompt}}}}).body
        total += sum(h["_source"]["label"] == label for h in body["hits"]["hits"]) / 3
    assert data["text"]["by_language"]["de"]["precision_at_k"] == pytest.approx(total / len(prompts), abs=1e-6)


def test_the_table_names_each_language_and_kind(env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = invoke(env, tmp_path, str(env.folder), "--labels", str(write_translations(tmp_path / "l.yaml")),
                    "--lang", "zh", "-k", "2", "--no-ann")
    assert result.exit_code == 0, result.output
    assert "text (zh)" in result.stdout and "R@1 / R@2 / P@2 / mAP@2" in result.stdout
    assert "latency (text)" in result.stdout and "latency (exact)" not in result.stdout  # --no-ann
    assert "text (en)" not in result.stdout
    # The folder per label was read (36 images; manifest.csv is not an image).
    assert "36 images, 12 labels" in result.stdout


BAD_FILES = {
    "shape.yaml": "labels: [1, 2]\n",
    "placeholder.yaml": "labels: {}\ntemplates: {en: ['a {label} by {artist}']}\n",
    "unknown.yaml": "label: {}\n",
}


@pytest.mark.parametrize("args, words", [
    (["--labels", "shape.yaml"], ["--labels", "expected a mapping with 'labels'"]),
    (["--labels", "placeholder.yaml"], ["a placeholder other than {label}"]),
    (["--labels", "unknown.yaml"], ["unknown key(s) label"]),
    (["--labels", "missing.yaml"], ["--labels", "cannot read it"]),
    (["--lang", "tlh"], ["no prompt template for language(s) tlh", "--lang"]),
    (["--sweep", "3,x"], ["--sweep"]),
    (["--sweep", "1"], ["--sweep values must be between k (10)"]),
    (["--plot", "eval.jpg"], ["the plot is a PNG file"]),
    (["--plot", "gone/eval.png"], ["its folder does not exist"]),
    (["-k", "0"], ["k must be between 1 and 10000", "-k"]),
    (["--max-image-queries", "0", "--like"], ["--max-image-queries must be at least 1"]),
    (["--max-ann-queries", "0"], ["--max-ann-queries must be at least 1"]),
])
def test_bad_input_names_the_flag(env, tmp_path, monkeypatch, args, words):
    monkeypatch.chdir(tmp_path)
    for name, text in BAD_FILES.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    result = invoke(env, tmp_path, str(env.folder / "manifest.csv"), *args)
    assert result.exit_code == ValidationError.exit_code, result.output
    for word in words:
        assert word in result.output
    assert "Traceback" not in result.output


def test_an_unreadable_query_image_is_counted_not_fatal(env, tmp_path, monkeypatch):
    import shutil

    monkeypatch.chdir(tmp_path)
    queries = tmp_path / "queries"
    shutil.copytree(env.folder / "red-circle", queries / "red-circle")
    (queries / "red-circle" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    result = invoke(env, tmp_path, str(env.folder / "manifest.csv"), "--image-queries", str(queries),
                    "--no-ann", "--lang", "en", "--lang", "en", "-k", "3", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["image"]["queries"] == 3 and data["skipped"]["image_queries_unreadable"] == 1
    assert data["image"]["by_label"] == {"red-circle": pytest.approx(data["image"]["precision_at_k"])}
    assert data["text"]["queries"] == 12  # --lang en twice is English once (one default template)


def test_a_source_without_labels_is_refused(env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.csv").write_text("id,path\na,x.png\n", encoding="utf-8")
    result = invoke(env, tmp_path, str(tmp_path / "m.csv"))
    assert result.exit_code == ValidationError.exit_code, result.output
    assert "no labeled images" in result.output


def test_metric_formulas():
    q = Query(kind="text", label="cat", text="", hit_labels=["dog", "cat", None, "cat"], relevant_total=2)
    assert recall_at(q, 1) == 0.0 and recall_at(q, 2) == 1.0
    assert precision_at(q, 4) == 0.5
    assert average_precision(q, 4) == pytest.approx((1 / 2 + 2 / 4) / 2)
    assert percentile([5, 1, 3, 2, 4], 50) == 3 and percentile([5, 1, 3, 2, 4], 95) == 5


def test_the_text_path_imports_no_torch():
    code = "import sys, toolkit.cli, toolkit.evaluate; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_exact_search_ranks_like_the_clusters_knn(env):
    """The ANN figure compares against real hits: exact search returns k documents, best first, with
    cosine + 1 scores, and the same ids as the test cluster's (exact) kNN."""
    from toolkit.devtools import send
    from toolkit.evaluate import exact_query
    from toolkit.search import SearchOptions, image_query, parse_response
    from toolkit.textmodel.parity import cluster_embeddings

    vector = cluster_embeddings(env.client, "trained-text", ["ein Foto von einem blauen Dreieck"])[0]
    options = SearchOptions(k=3, filters=("label=blue-triangle", "label=red-circle"))
    exact = parse_response(send(env.client, exact_query(vector, env.settings, options)))
    knn = parse_response(send(env.client, image_query(vector, env.settings, options)))
    assert len(exact.hits) == 3 and all(1.0 < h.score <= 2.0 for h in exact.hits)
    assert [h.source["label"] for h in exact.hits] == ["blue-triangle"] * 3
    assert [h.id for h in exact.hits] == [h.id for h in knn.hits]
    assert exact.hits[0].score == pytest.approx(2 * knn.hits[0].score, abs=1e-5)  # knn: (1 + cos) / 2
