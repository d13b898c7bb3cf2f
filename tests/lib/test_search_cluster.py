"""toolkit.search against the test cluster with the tiny models: every query kind returns the right hits.

Text queries: the tiny text model (512 dims) is deployed in the cluster, the image vector field has
512 dims, and each document's image vector is built with a chosen cosine to the query's local
embedding, so the expected order is known. Image and like queries: the tiny CLIP model (64 dims)
embeds small generated images.
"""

from __future__ import annotations

import math

import pytest

from tests.escluster.testing import call, start_cluster
from toolkit import search as s
from toolkit.cluster import make_client
from toolkit.devtools import Request, send
from toolkit.errors import NotFound
from toolkit.settings import load_settings

QUERY = "dog in snow"
# id -> (cosine of its image vector to the query, caption, label, relation_id)
DOCS = {
    "d1": (0.9, "red car", "car", "r1"),
    "d2": (0.7, "blue sky", "sky", "r1"),
    "d3": (0.5, "green tree", "tree", "r2"),
    "d4": (0.3, "a cat on the beach", "cat", "r2"),
    "d5": (0.1, "the city street", "cat", "r3"),
    "d6": (-0.2, "dog in snow", "dog", "r3"),
}


def unit(v):
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def with_cosine(q, c, seed):
    """A unit vector whose cosine to unit vector ``q`` is exactly ``c``."""
    import random

    rnd = random.Random(seed)
    r = [rnd.gauss(0, 1) for _ in q]
    dot = sum(a * b for a, b in zip(r, q, strict=True))
    r = unit([a - dot * b for a, b in zip(r, q, strict=True)])     # orthogonal to q
    s_ = math.sqrt(1 - c * c)
    return [c * a + s_ * b for a, b in zip(q, r, strict=True)]


def put_index(es, settings, dims, *, pipeline=None):
    f = settings.fields
    vec = {"type": "dense_vector", "dims": dims, "similarity": "cosine", "index": True,
           "index_options": {"type": "hnsw"}}
    body = {"mappings": {"properties": {
        f.image_vector: vec, f.caption_vector: {**vec, "dims": 512}, f.caption: {"type": "text"},
        f.label: {"type": "keyword"}, f.relation_id: {"type": "keyword"}, f.path: {"type": "keyword"}}},
        "aliases": {settings.index.alias: {}}}
    if pipeline:
        body["settings"] = {"index": {"default_pipeline": pipeline}}
    r = call(es.url, "PUT", f"/{settings.index.alias}-000001", body)
    assert r.status == 200, r.body


@pytest.fixture(scope="module")
def text_env():
    """A trial cluster with the tiny text model deployed and six documents with known vectors."""
    from sentence_transformers import SentenceTransformer

    from tests.models import tiny_text_model
    from toolkit.assets import load_assets
    from toolkit.textmodel import deploy

    es = start_cluster(license="trial")
    model_dir = tiny_text_model()
    settings = load_settings(environ={}, overrides={
        "elasticsearch.url": es.url, "text_model.hub_id": str(model_dir), "text_model.model_id": "tiny-text",
        "index.alias": "pics"})
    client = make_client(settings)
    deploy(client, settings, skip_parity=True)
    pipeline = next(a for a in load_assets(settings) if a.kind == "pipeline")
    send(client, pipeline.request)
    put_index(es, settings, 512, pipeline=pipeline.name)
    q = unit([float(x) for x in SentenceTransformer(str(model_dir), device="cpu").encode(QUERY)])
    f = settings.fields
    for i, (doc_id, (cos, caption, label, rel)) in enumerate(DOCS.items()):
        doc = {f.image_vector: with_cosine(q, cos, i), f.caption: caption, f.label: label,
               f.relation_id: rel, f.path: f"/img/{doc_id}.jpg"}
        send(client, Request("PUT", f"pics/_doc/{doc_id}", body=doc, params={"refresh": "true"}))
    yield es, settings, client
    es.stop()


def ids(result):
    return [h.id for h in result.hits]


def test_text_query_returns_documents_by_cosine(text_env):
    _, settings, client = text_env
    outcome = s.search(settings=settings, text=QUERY, options=s.SearchOptions(k=4), client=client)
    assert ids(outcome.result) == ["d1", "d2", "d3", "d4"]
    # Cosine similarity -> _score (1 + cos) / 2.
    assert [round(h.score, 3) for h in outcome.result.hits] == [0.95, 0.85, 0.75, 0.65]
    # The caption pipeline ran on the document: Elasticsearch's model_id kept as caption_model.
    assert outcome.result.hits[0].source == {"caption": "red car", "label": "car", "relation_id": "r1",
                                             "path": "/img/d1.jpg",
                                             "caption_model": settings.text_model.cluster_deployment_id}


def test_filters_apply_before_the_vector_search(text_env):
    _, settings, client = text_env
    # The two "cat" documents are far down the list: a post-filter on the top 2 would find none.
    result = s.search(settings=settings, text=QUERY, client=client,
                      options=s.SearchOptions(k=2, num_candidates=2, filters=("label=cat",))).result
    assert ids(result) == ["d4", "d5"]
    options = s.SearchOptions(k=6, filters=("label=cat", "label=dog", "relation_id=r3"))
    result = s.search(settings=settings, text=QUERY, client=client, options=options).result
    assert ids(result) == ["d5", "d6"]


def test_collapse_returns_one_hit_per_group(text_env):
    _, settings, client = text_env
    result = s.search(settings=settings, text=QUERY, client=client,
                      options=s.SearchOptions(k=6, collapse="relation_id")).result
    assert ids(result) == ["d1", "d3", "d5"]


def test_thresholds_drop_weak_hits(text_env):
    _, settings, client = text_env
    by_similarity = s.search(settings=settings, text=QUERY, client=client,
                             options=s.SearchOptions(k=6, min_similarity=0.6)).result
    assert ids(by_similarity) == ["d1", "d2"]
    by_score = s.search(settings=settings, text=QUERY, client=client,
                        options=s.SearchOptions(k=6, min_score=0.7)).result     # cos >= 0.4
    assert ids(by_score) == ["d1", "d2", "d3"]


def test_fields_limit_the_source(text_env):
    _, settings, client = text_env
    result = s.search(settings=settings, text=QUERY, client=client,
                      options=s.SearchOptions(k=1, fields=("caption",))).result
    assert result.hits[0].source == {"caption": "red car"}


def test_hybrid_rrf_on_trial_lifts_the_caption_match(text_env):
    _, settings, client = text_env
    plain = s.search(settings=settings, text=QUERY, client=client, options=s.SearchOptions(k=3))
    assert "d6" not in ids(plain.result)
    outcome = s.search(settings=settings, text=QUERY, client=client,
                       options=s.SearchOptions(k=3, hybrid=True))
    assert outcome.mode == "rrf"
    # d6: first in the caption kNN and the only BM25 match, last by image.
    assert ids(outcome.result)[0] == "d6"
    assert set(ids(outcome.result)) >= {"d6", "d1"}


def test_hybrid_boosted_sum_without_an_enterprise_license(text_env):
    es, settings, client = text_env
    es.state.license_type = "platinum"   # ML yes (query_vector_builder), RRF no
    try:
        outcome = s.search(settings=settings, text=QUERY, client=client,
                           options=s.SearchOptions(k=3, hybrid=True))
        assert outcome.mode == "boosted_sum"
        assert ids(outcome.result)[0] == "d6"
        with pytest.raises(s.LicenseError):
            s.search(settings=settings, text=QUERY, client=client,
                     options=s.SearchOptions(k=3, hybrid=True, rrf=True))
    finally:
        es.state.license_type = "trial"


def test_errors_name_the_fix(text_env):
    _, settings, client = text_env
    with pytest.raises(NotFound) as info:
        s.search(settings=settings, text=QUERY, index="nothing-here", client=client)
    assert "toolkit setup" in info.value.hint
    other = settings.model_copy(deep=True)
    other.text_model.deployment_id = "not-deployed"
    with pytest.raises(NotFound) as info:
        s.search(settings=other, text=QUERY, client=client)
    assert "deploy-model" in info.value.hint


def test_printed_request_sent_by_hand_gives_the_same_hits(text_env):
    es, settings, client = text_env
    options = s.SearchOptions(k=3, filters=("relation_id=r1", "relation_id=r2"))
    outcome = s.search(settings=settings, text=QUERY, options=options)           # dry run
    printed = s.render_steps(outcome.steps)
    lines = [line for line in printed.splitlines() if not line.startswith("#")]
    method, target = lines[0].split(" ", 1)
    import json

    reply = call(es.url, method, "/" + target, json.loads("\n".join(lines[1:])))
    assert reply.status == 200, reply.body
    by_hand = [h["_id"] for h in reply.body["hits"]["hits"]]
    assert by_hand == ids(s.search(settings=settings, text=QUERY, options=options, client=client).result)
    assert by_hand == ["d1", "d2", "d3"]


# ---------------------------------------------------------------------------------------------- images


COLOURS = {"red": (220, 20, 20), "orange": (230, 120, 20), "green": (20, 200, 40), "blue": (20, 40, 220),
           "white": (250, 250, 250)}


@pytest.fixture(scope="module")
def image_env(tmp_path_factory):
    """A basic-license cluster (image search needs no ML) with tiny-CLIP vectors of five images."""
    import numpy as np
    from PIL import Image

    from tests.models import tiny_clip_model
    from toolkit.images.decode import load_image
    from toolkit.images.embedder import ClipImageEmbedder

    folder = tmp_path_factory.mktemp("images")
    es = start_cluster(license="basic")
    settings = load_settings(environ={}, overrides={
        "elasticsearch.url": es.url, "index.alias": "photos", "index.image_dims": 64,
        "image_model.name": str(tiny_clip_model()), "image_model.device": "cpu"})
    client = make_client(settings)
    put_index(es, settings, 64)
    embedder = ClipImageEmbedder(str(tiny_clip_model()), device="cpu", batch_size=8)
    vectors = {}
    for i, (name, rgb) in enumerate(COLOURS.items()):
        image = Image.new("RGB", (40, 30), rgb)
        for x in range(0, 40, 5):                                   # some structure, not a flat square
            image.putpixel((x, (x * 3 + i) % 30), (i * 40, 255 - x, x * 6))
        image.save(folder / f"{name}.png")
        vectors[name] = next(iter(embedder.embed([load_image(folder / f"{name}.png")])))
        send(client, Request("PUT", f"photos/_doc/{name}", params={"refresh": "true"}, body={
            "image_embedding": s.float32_list(vectors[name]), "path": str(folder / f"{name}.png"),
            "label": "warm" if name in ("red", "orange") else "cold"}))

    def expected(query_vector, exclude=()):
        q = np.asarray(query_vector, dtype=np.float64)
        cos = {n: float(np.dot(q, v) / (np.linalg.norm(q) * np.linalg.norm(v))) for n, v in vectors.items()
               if n not in exclude}
        return sorted(cos, key=lambda n: -cos[n])

    yield es, settings, client, embedder, folder, vectors, expected
    es.stop()


def test_image_query_finds_the_same_image_first(image_env):
    _, settings, client, embedder, folder, vectors, expected = image_env
    outcome = s.search(settings=settings, image=str(folder / "blue.png"), client=client, embedder=embedder,
                       options=s.SearchOptions(k=5))
    assert ids(outcome.result) == expected(vectors["blue"])
    assert ids(outcome.result)[0] == "blue" and outcome.result.hits[0].score == pytest.approx(1.0, abs=1e-5)


def test_like_query_uses_the_stored_vector_and_leaves_the_doc_out(image_env):
    _, settings, client, _, _, vectors, expected = image_env
    outcome = s.search(settings=settings, like="red", client=client, options=s.SearchOptions(k=5))
    assert ids(outcome.result) == expected(vectors["red"], exclude=("red",))
    assert len(outcome.steps) == 2
    filtered = s.search(settings=settings, like="red", client=client,
                        options=s.SearchOptions(k=5, filters=("label=warm",)))
    assert ids(filtered.result) == ["orange"]
    with pytest.raises(NotFound, match="no document"):
        s.search(settings=settings, like="purple", client=client)


@pytest.mark.real_cluster
@pytest.mark.skipif(not __import__("os").environ.get("ES_URL"), reason="needs a real Elasticsearch at ES_URL")
def test_like_reads_vectors_from_a_real_cluster():
    """9.2+ leaves vectors out of _source: the lookup must still get them (exclude_vectors: false)."""
    import uuid

    settings = load_settings(overrides={"index.alias": f"toolkit-test-{uuid.uuid4().hex[:8]}",
                                        "index.image_dims": 4})
    client = make_client(settings)
    index = settings.index.alias
    send(client, Request("PUT", index, body={"mappings": {"properties": {
        "image_embedding": {"type": "dense_vector", "dims": 4, "similarity": "cosine"}}}}))
    try:
        for doc_id, vector in {"a": [1, 0, 0, 0], "b": [0.9, 0.1, 0, 0], "c": [0, 1, 0, 0]}.items():
            send(client, Request("PUT", f"{index}/_doc/{doc_id}", body={"image_embedding": vector},
                                 params={"refresh": "true"}))
        outcome = s.search(settings=settings, like="a", client=client, options=s.SearchOptions(k=2))
        assert ids(outcome.result) == ["b", "c"]
        assert "image_embedding" not in outcome.result.hits[0].source
    finally:
        send(client, Request("DELETE", index))
