"""toolkit.smoke against the test cluster with tiny local models.

One cluster is shared by the smoke tests (lib and CLI): the tiny text model with a 64-dim Dense layer
(so text queries can search the tiny CLIP's 64-dim image vectors) is traced, deployed and set up
once. Tests that break a piece (stop the model, delete the pipeline) put it back before they end.
"""

from __future__ import annotations

import atexit
import functools
import json
import shutil
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import pytest

from toolkit import smoke
from toolkit.cluster import make_client
from toolkit.devtools import Request, exists, send
from toolkit.settings import Settings, load_settings

DIMS = 64


def tiny_text_model_64() -> Path:
    """The tiny text model with its Dense layer resized to 64 outputs (the tiny CLIP's dims)."""
    return _text64()


@functools.cache
def _text64() -> Path:
    import torch
    from safetensors.torch import save_file

    from tests.models import tiny_text_model

    root = Path(tempfile.mkdtemp(prefix="toolkit-text64-"))
    atexit.register(shutil.rmtree, root, True)
    target = root / "text64"
    shutil.copytree(tiny_text_model(), target)
    config_file = target / "2_Dense" / "config.json"
    config = json.loads(config_file.read_text())
    config["out_features"] = DIMS
    config_file.write_text(json.dumps(config))
    weight = torch.randn(DIMS, config["in_features"], generator=torch.Generator().manual_seed(7))
    save_file({"linear.weight": (weight / config["in_features"] ** 0.5).contiguous()},
              str(target / "2_Dense" / "model.safetensors"))
    return target


def smoke_config(url: str) -> dict[str, object]:
    """Settings (dotted keys) for the tiny models on the test cluster."""
    from tests.models import tiny_clip_model

    return {"elasticsearch.url": url, "text_model.hub_id": str(tiny_text_model_64()),
            "text_model.model_id": "tiny-text-64", "image_model.name": str(tiny_clip_model()),
            "image_model.device": "cpu", "index.image_dims": DIMS, "index.caption_dims": DIMS}


def write_config(folder: Path, values: dict[str, object]) -> Path:
    """``toolkit.yaml`` with the dotted keys nested into sections."""
    import yaml

    data: dict[str, dict[str, object]] = {}
    for key, value in values.items():
        section, name = key.split(".", 1)
        data.setdefault(section, {})[name] = value
    file = folder / "toolkit.yaml"
    file.write_text(yaml.safe_dump(data), encoding="utf-8")
    return file


@dataclass
class Env:
    url: str
    settings: Settings
    handle: object

    @property
    def client(self):
        return make_client(self.settings)

    def settings_with(self, **dotted: object) -> Settings:
        values = {**smoke_config(self.url), **{k.replace("__", "."): v for k, v in dotted.items()}}
        return load_settings(environ={}, overrides=values)


@functools.cache
def shared_env() -> Env:
    """A trial test cluster with the 64-dim tiny text model deployed and `toolkit setup` run (once)."""
    from tests.escluster.testing import start_cluster
    from toolkit import provision
    from toolkit.textmodel import deploy

    handle = start_cluster(license="trial")
    atexit.register(handle.stop)
    settings = load_settings(environ={}, overrides=smoke_config(handle.url))
    client = make_client(settings)
    deploy(client, settings, skip_parity=True)
    provision.setup(client, settings)
    return Env(handle.url, settings, handle)


@pytest.fixture(scope="module")
def env() -> Env:
    return shared_env()


@pytest.fixture(scope="module")
def embedder():
    from tests.models import tiny_clip_model
    from toolkit.images.embedder import ClipImageEmbedder

    return ClipImageEmbedder(str(tiny_clip_model()), device="cpu", batch_size=8)


def names(report):
    return [c.name for c in report.checks]


def check(report, name):
    return next(c for c in report.checks if c.name == name)


def leftovers(client, name):
    """Which of the temporary resources still exist."""
    paths = [f"{name}-000001", f"_index_template/{name}", f"_component_template/{name}-mappings",
             f"_component_template/{name}-settings"]
    found = [p for p in paths if exists(client, p)]
    try:
        send(client, Request("GET", f"_ingest/pipeline/{name}"))
        found.append(f"_ingest/pipeline/{name}")
    except Exception:
        pass
    return found


def test_smoke_passes_and_removes_the_temporary_index(env, embedder):
    seen = []
    report = smoke.run_smoke(env.client, env.settings, embedder=embedder, on_check=seen.append)
    assert report.passed, report.verdict()
    assert names(report) == ["reachable", "version", "license", "ml_nodes", "model_started", "pipeline",
                             "index_images", "text_query", "image_query", "cleanup"]
    assert [c.name for c in seen] == names(report)          # progress reported each check as it ended
    assert report.verdict().startswith("smoke: PASS 10/10 checks in ")
    assert report.index.startswith("toolkit-smoke-")
    assert "7 photos indexed" in check(report, "index_images").message
    assert check(report, "image_query").message.startswith("cat.jpg -> cat")
    assert f"{DIMS} dims" in check(report, "pipeline").message
    assert leftovers(env.client, report.index) == []
    # Nothing of the user's was touched: their pipeline and index are still there.
    assert exists(env.client, "images")


def test_keep_leaves_the_index_with_the_photos_and_their_caption_vectors(env, embedder):
    report = smoke.run_smoke(env.client, env.settings, embedder=embedder, keep=True, name="toolkit-smoke-kept")
    assert report.passed, report.verdict()
    client = env.client
    try:
        assert "kept toolkit-smoke-kept-000001" in check(report, "cleanup").message
        assert len(leftovers(client, "toolkit-smoke-kept")) == 5
        tmp = smoke.temporary_settings(env.settings, "toolkit-smoke-kept")
        docs = smoke.stored_vectors(client, tmp)
        assert sorted(docs) == ["astronaut", "brick-wall", "camera", "cat", "coffee", "deep-field", "rocket"]
        assert all(len(d["caption_embedding"]) == DIMS and len(d["image_embedding"]) == DIMS
                   for d in docs.values())
        # The same templates as setup: the temporary index maps the vectors as the user's index does.
        mapping = send(client, Request("GET", "toolkit-smoke-kept-000001/_mapping"))
        props = mapping["toolkit-smoke-kept-000001"]["mappings"]["properties"]
        assert props["image_embedding"]["dims"] == DIMS and props["image_embedding"]["type"] == "dense_vector"
    finally:
        for target in ("toolkit-smoke-kept-000001", "_index_template/toolkit-smoke-kept",
                       "_component_template/toolkit-smoke-kept-mappings",
                       "_component_template/toolkit-smoke-kept-settings", "_ingest/pipeline/toolkit-smoke-kept"):
            smoke._delete(client, target)


def test_text_query_expectation_follows_the_clusters_embedding(env):
    """The expected first hit is the argmax of the exact similarity to the cluster's _infer output."""
    from toolkit.textmodel.parity import cluster_embeddings

    q = cluster_embeddings(env.client, "tiny-text-64", [smoke.TEXT_QUERY])[0]
    assert len(q) == DIMS
    assert smoke.similarity_score("cosine", q, q) == pytest.approx(1.0)
    assert smoke.similarity_score("cosine", q, [-x for x in q]) == pytest.approx(0.0)
    assert smoke.similarity_score("l2_norm", [1, 0], [0, 0]) == pytest.approx(0.5)
    assert smoke.similarity_score("dot_product", [0.6, 0.8], [0.6, 0.8]) == pytest.approx(1.0)
    assert smoke.similarity_score("max_inner_product", [1, 0], [-1, 0]) == pytest.approx(0.5)


def test_model_stopped_fails_precisely_and_later_checks_say_why(env, embedder):
    from toolkit.textmodel import start, start_options, stop

    client = env.client
    stop(client, "tiny-text-64", force=True)
    try:
        report = smoke.run_smoke(client, env.settings, embedder=embedder)
    finally:
        start(client, "tiny-text-64", start_options(env.settings))
    assert not report.passed
    failed = [c.name for c in report.failures]
    assert failed[0] == "model_started"
    assert report.verdict().startswith("smoke: FAIL model_started: ")
    assert "not started" in check(report, "model_started").message
    assert check(report, "model_started").fix and "deploy-model" in check(report, "model_started").fix
    assert "could not embed the caption" in check(report, "pipeline").message
    assert check(report, "index_images").message == "not run: needs model_started"
    assert check(report, "text_query").message == "not run: needs index_images"
    assert check(report, "cleanup").passed and leftovers(client, report.index) == []
    # nothing was created, and cleanup says so instead of claiming to have removed an index
    assert check(report, "cleanup").message.startswith("nothing to remove"), check(report, "cleanup").message


def test_pipeline_missing_fails_precisely(env, embedder):
    from toolkit import provision

    client = env.client
    send(client, Request("DELETE", "_ingest/pipeline/toolkit-caption-embedding"))
    try:
        report = smoke.run_smoke(client, env.settings, embedder=embedder)
    finally:
        provision.setup(client, env.settings)
    assert [c.name for c in report.failures] == ["pipeline", "index_images", "text_query", "image_query"]
    assert report.verdict() == ("smoke: FAIL pipeline: ingest pipeline 'toolkit-caption-embedding' does not "
                                "exist (+3 more failed)")
    assert check(report, "image_query").message == "not run: needs index_images"
    assert "toolkit setup" in check(report, "pipeline").fix


def test_caption_dims_wrong_fails_precisely(env, embedder):
    settings = env.settings_with(index__caption_dims=512)
    report = smoke.run_smoke(env.client, settings, embedder=embedder)
    assert not report.passed
    pipeline = check(report, "pipeline")
    assert not pipeline.passed
    assert pipeline.message == (f"pipeline 'toolkit-caption-embedding' embeds captions with {DIMS} dims but "
                                "index.caption_dims is 512")
    assert f"index.caption_dims: {DIMS}" in pipeline.fix
    assert check(report, "index_images").message == "not run: needs pipeline"
    assert leftovers(env.client, report.index) == []


def test_image_dims_wrong_fails_naming_both_sizes(env, embedder):
    settings = env.settings_with(index__image_dims=512)
    report = smoke.run_smoke(env.client, settings, embedder=embedder)
    message = check(report, "index_images").message
    assert "outputs 64 dims" in message and "512" in message, message
    assert check(report, "text_query").message == "not run: needs index_images"


def test_unreachable_cluster_fails_on_the_first_check():
    settings = load_settings(environ={}, overrides={"elasticsearch.url": "http://127.0.0.1:9",
                                                    "elasticsearch.request_timeout": 2})
    report = smoke.run_smoke(make_client(settings), settings)
    assert not report.passed
    assert report.checks[0].name == "reachable" and "cannot reach" in report.checks[0].message
    assert all(not c.passed for c in report.checks)
    assert "cleanup" not in names(report)                # nothing was created, nothing to clean


def test_json_and_junit_shapes():
    report = smoke.SmokeReport(checks=[smoke.SmokeCheck("reachable", True, "ok <9.2>", 0.25),
                                       smoke.SmokeCheck("pipeline", False, 'missing "x" & more', 1.5,
                                                        "run `toolkit setup`")],
                               seconds=2.0, index="toolkit-smoke-x")
    data = report.as_json()
    assert data == {"passed": False, "seconds": 2.0, "checks": [
        {"name": "reachable", "passed": True, "message": "ok <9.2>", "seconds": 0.25},
        {"name": "pipeline", "passed": False, "message": 'missing "x" & more', "seconds": 1.5}]}
    root = ET.fromstring(report.junit_xml(scrub=lambda t: t.replace("more", "***")))
    assert root.tag == "testsuite" and root.get("tests") == "2" and root.get("failures") == "1"
    cases = root.findall("testcase")
    assert [c.get("name") for c in cases] == ["reachable", "pipeline"]
    assert cases[0].find("failure") is None and cases[0].find("system-out").text == "ok <9.2>"
    failure = cases[1].find("failure")
    assert failure.get("message") == 'missing "x" & ***'
    assert "fix: run `toolkit setup`" in failure.text
    assert report.verdict() == 'smoke: FAIL pipeline: missing "x" & more'


def test_text_query_fails_when_the_query_embedding_differs_from_infer(env, embedder, monkeypatch):
    """A text query embedded differently from the cluster's own _infer output is caught."""
    import importlib

    # The package re-exports a function parity(), so reach the module through importlib.
    parity = importlib.import_module("toolkit.textmodel.parity")
    real = parity.cluster_embeddings
    monkeypatch.setattr(parity, "cluster_embeddings",
                        lambda client, dep, texts: [[-x for x in v] for v in real(client, dep, texts)])
    report = smoke.run_smoke(env.client, env.settings, embedder=embedder)
    text = check(report, "text_query")
    assert not text.passed
    assert "is nearest to the cluster's _infer embedding" in text.message
    assert [c.name for c in report.failures] == ["text_query"]


@pytest.mark.real_cluster
def test_smoke_passes_on_a_real_cluster_with_the_default_models(real_es_url):
    """Deploys the default text model and runs setup (idempotent), then the smoke test with the
    semantic check ("a cat" finds the cat, in English and German)."""
    from toolkit import provision
    from toolkit.textmodel import deploy

    settings = load_settings()
    client = make_client(settings)
    deploy(client, settings)
    provision.setup(client, settings)
    report = smoke.run_smoke(client, settings)
    assert report.passed, report.verdict()
    assert "semantic" in names(report) and check(report, "semantic").passed
