"""toolkit.search: request builders, mode choice, error mapping, the search() flow (fake client)."""

from __future__ import annotations

import http.server
import io
import json
import threading
from types import SimpleNamespace

import pytest

from toolkit import search as s
from toolkit.errors import DimsMismatch, ImageError, LicenseError, NotFound, ValidationError
from toolkit.settings import load_settings


@pytest.fixture
def settings(tmp_path):
    return load_settings(cwd=tmp_path, environ={}, overrides={"index.image_dims": 4, "index.alias": "pics",
                                                              "text_model.model_id": "tiny-text"})


class FakeClient:
    """Answers perform_request from a list of (method, path prefix) -> body | exception; records calls."""

    def __init__(self, routes, license_type="trial"):
        self.routes = routes
        self.calls = []
        self.license_type = license_type
        self.license = SimpleNamespace(
            get=lambda: {"license": {"type": self.license_type, "status": "active"}})

    def info(self):
        self.calls.append(("GET", "/", None))
        return {"version": {"number": "9.2.0"}}

    def perform_request(self, method, target, headers=None, body=None):
        self.calls.append((method, target, body))
        for (m, prefix), answer in self.routes.items():
            if m == method and target.startswith(prefix):
                if isinstance(answer, Exception):
                    raise answer
                value = answer(body) if callable(answer) else answer
                return SimpleNamespace(body=value)
        raise AssertionError(f"unexpected request {method} {target}")


def api_error(status, err_type, reason):
    import elasticsearch
    from elastic_transport import ApiResponseMeta, HttpHeaders

    meta = ApiResponseMeta(status=status, http_version="1.1", headers=HttpHeaders(), duration=0.0, node=None)
    cause = {"type": err_type, "reason": reason}
    body = {"error": {**cause, "root_cause": [cause]}, "status": status}
    return elasticsearch.ApiError(message=err_type, meta=meta, body=body)


def response(*hits, took=3):
    return {"took": took, "hits": {"total": {"value": len(hits), "relation": "eq"},
                                   "hits": [{"_id": i, "_score": sc, "_source": src} for i, sc, src in hits]}}


# ---------------------------------------------------------------------------------------------- builders


def test_text_query_is_a_knn_with_the_cluster_embedding_the_text(settings):
    req = s.text_query("  ein Hund im Schnee ", settings, s.SearchOptions(k=3))
    assert (req.method, req.path) == ("POST", "pics/_search")
    assert req.body == {
        "knn": {"field": "image_embedding", "k": 3, "num_candidates": 100,
                "query_vector_builder": {"text_embedding": {"model_id": "tiny-text",
                                                            "model_text": "ein Hund im Schnee"}}},
        "size": 3,
        "_source": {"excludes": ["image_embedding", "caption_embedding"]},
    }


def test_the_deployment_id_is_the_model_that_embeds(settings):
    settings.text_model.deployment_id = "tiny-text-search"
    req = s.text_query("x", settings)
    assert req.body["knn"]["query_vector_builder"]["text_embedding"]["model_id"] == "tiny-text-search"


@pytest.mark.parametrize(("k", "expected"), [(1, 100), (10, 100), (50, 500), (1000, 10000), (10000, 10000)])
def test_num_candidates_default(k, expected):
    assert s.SearchOptions(k=k).candidates == expected


@pytest.mark.parametrize(("options", "flag"), [
    (s.SearchOptions(k=0), "-k"),
    (s.SearchOptions(k=10001), "-k"),
    (s.SearchOptions(k=10, num_candidates=5), "--num-candidates"),
    (s.SearchOptions(k=10, num_candidates=10001), "--num-candidates"),
    (s.SearchOptions(caption_weight=-1), "--caption-weight"),
    (s.SearchOptions(filters=("label",)), "--filter"),
    (s.SearchOptions(filters=("=cat",)), "--filter"),
    (s.SearchOptions(filters=("label=",)), "--filter"),
])
def test_bad_options_name_their_flag(settings, options, flag):
    with pytest.raises(ValidationError) as info:
        s.text_query("x", settings, options)
    assert flag in f"{info.value.message} {info.value.hint}"


def test_filters_term_per_field_terms_for_repeated_field():
    assert s.filter_clauses(["label=cat"]) == [{"term": {"label": "cat"}}]
    assert s.filter_clauses(["label=cat", "label=dog", "relation_id=r=1", "label=cat"]) == [
        {"terms": {"label": ["cat", "dog"]}}, {"term": {"relation_id": "r=1"}}]


def test_options_land_where_elasticsearch_reads_them(settings):
    opts = s.SearchOptions(k=4, num_candidates=40, filters=("label=cat",), min_similarity=0.3, min_score=0.6,
                           collapse="relation_id", fields=("caption", "path", "image_embedding"))
    body = s.text_query("cat", settings, opts).body
    assert body["knn"]["filter"] == {"term": {"label": "cat"}}   # inside knn: a pre-filter
    assert body["knn"]["similarity"] == 0.3 and body["knn"]["num_candidates"] == 40
    assert body["min_score"] == 0.6
    assert body["collapse"] == {"field": "relation_id"}
    # Vectors are never returned, even when asked for.
    assert body["_source"] == {"includes": ["caption", "path", "image_embedding"],
                               "excludes": ["image_embedding", "caption_embedding"]}


@pytest.mark.parametrize("text", ["", "   ", "\n"])
def test_empty_text_is_refused(settings, text):
    with pytest.raises(ValidationError, match="empty"):
        s.text_query(text, settings)


def test_image_query_sends_the_vector_and_checks_its_dims(settings):
    body = s.image_query([0.1, 0.2, 0.3, 0.4], settings, s.SearchOptions(k=2)).body
    assert body["knn"]["query_vector"] == [0.1, 0.2, 0.3, 0.4]
    assert "query_vector_builder" not in body["knn"]
    with pytest.raises(DimsMismatch, match="3 dims"):
        s.image_query([0.1, 0.2, 0.3], settings)


def test_like_query_leaves_the_document_out_inside_the_knn_filter(settings):
    body = s.like_query("doc-7", [1, 0, 0, 0], settings, s.SearchOptions(filters=("label=cat",))).body
    assert body["knn"]["filter"] == [{"term": {"label": "cat"}},
                                     {"bool": {"must_not": [{"ids": {"values": ["doc-7"]}}]}}]


def test_like_lookup_asks_for_the_vector_explicitly(settings):
    req = s.like_lookup_request("doc-7", settings)
    assert req.path == "pics/_search"
    assert req.body["query"] == {"ids": {"values": ["doc-7"]}}
    assert req.body["_source"] == {"exclude_vectors": False, "includes": ["image_embedding"]}
    found = {"hits": {"hits": [{"_id": "doc-7", "_source": {"image_embedding": [1, 2, 3, 4]}}]}}
    assert s.vector_from_lookup(found, "doc-7", settings) == [1.0, 2.0, 3.0, 4.0]
    with pytest.raises(NotFound, match="no document"):
        s.vector_from_lookup({"hits": {"hits": []}}, "doc-7", settings)
    with pytest.raises(NotFound, match="no 'image_embedding' vector"):
        s.vector_from_lookup({"hits": {"hits": [{"_id": "doc-7", "_source": {}}]}}, "doc-7", settings)


@pytest.mark.parametrize(("options", "allowed", "mode"), [
    (s.SearchOptions(), True, "knn"),
    (s.SearchOptions(hybrid=True), True, "rrf"),
    (s.SearchOptions(hybrid=True), None, "rrf"),
    (s.SearchOptions(hybrid=True), False, "boosted_sum"),
    (s.SearchOptions(caption_weight=0.3), True, "boosted_sum"),
    (s.SearchOptions(hybrid=True, collapse="relation_id"), True, "boosted_sum"),
    (s.SearchOptions(hybrid=True, min_score=1.0), True, "boosted_sum"),
    (s.SearchOptions(hybrid=True, rrf=False), True, "boosted_sum"),
    (s.SearchOptions(hybrid=True, rrf=True), None, "rrf"),
])
def test_choose_mode(options, allowed, mode):
    assert s.choose_mode(options, rrf_allowed=allowed)[0] == mode


def test_forcing_rrf_fails_with_the_fix():
    with pytest.raises(LicenseError) as info:
        s.choose_mode(s.SearchOptions(hybrid=True, rrf=True), rrf_allowed=False)
    assert "drop --rrf" in info.value.hint
    with pytest.raises(ValidationError, match="--caption-weight"):
        s.choose_mode(s.SearchOptions(caption_weight=1, rrf=True), rrf_allowed=True)


def test_hybrid_rrf_body(settings):
    body = s.hybrid_query("red car", settings, s.SearchOptions(k=5, hybrid=True, filters=("label=car",)),
                          mode="rrf").body
    rrf = body["retriever"]["rrf"]
    image_knn, caption_knn, bm25 = (r.get("knn") or r["standard"] for r in rrf["retrievers"])
    assert image_knn["field"] == "image_embedding" and caption_knn["field"] == "caption_embedding"
    for knn in (image_knn, caption_knn):
        assert knn["query_vector_builder"]["text_embedding"]["model_text"] == "red car"
        assert knn["filter"] == {"term": {"label": "car"}}
    assert bm25["query"] == {"bool": {"must": [{"match": {"caption": {"query": "red car"}}}],
                                      "filter": [{"term": {"label": "car"}}]}}
    assert rrf["rank_window_size"] >= 5 and body["size"] == 5
    assert "query" not in body and "knn" not in body and "min_score" not in body


def test_hybrid_boosted_sum_body(settings):
    opts = s.SearchOptions(k=5, caption_weight=0.25)
    body = s.hybrid_query("red car", settings, opts, mode="boosted_sum").body
    assert [(k["field"], k["boost"]) for k in body["knn"]] == [("image_embedding", 1.0),
                                                               ("caption_embedding", 0.25)]
    assert body["query"] == {"match": {"caption": {"query": "red car", "boost": 0.25}}}
    assert "retriever" not in body


# ---------------------------------------------------------------------------------------------- run + errors


def test_run_returns_typed_hits(settings):
    client = FakeClient({("POST", "/pics/_search"): response(("a", 0.9, {"caption": "A"}), ("b", 0.8, {}))})
    result = s.run(client, s.text_query("x", settings))
    assert [(h.id, h.score, h.source) for h in result.hits] == [("a", 0.9, {"caption": "A"}), ("b", 0.8, {})]
    assert result.as_json() == {"took_ms": 3, "total": 2, "hits": [
        {"id": "a", "score": 0.9, "source": {"caption": "A"}}, {"id": "b", "score": 0.8, "source": {}}]}
    # The request sent is the request built (what --show-request prints).
    assert client.calls[0][2] == s.text_query("x", settings).body


@pytest.mark.parametrize(("error", "expected", "fix"), [
    (api_error(404, "index_not_found_exception", "no such index [pics]"), NotFound, "toolkit setup"),
    (api_error(404, "status_exception", "Could not find trained model [tiny-text]"), NotFound,
     "deploy-model"),
    (api_error(409, "status_exception", "Trained model deployment [tiny-text] is not allocated to any nodes"),
     NotFound, "deploy-model"),
    (api_error(403, "security_exception", "current license is non-compliant for [ml]"), LicenseError,
     "--image"),
    (api_error(400, "search_phase_execution_exception",
               "the query vector has a different number of dimensions [4] than the document vectors [8]"),
     DimsMismatch, "toolkit deploy-model"),  # a text query: the text model's size is what differs
])
def test_cluster_errors_come_with_their_fix(settings, error, expected, fix):
    client = FakeClient({("POST", "/pics/_search"): error})
    with pytest.raises(expected) as info:
        s.run(client, s.text_query("x", settings))
    assert fix in info.value.hint


def test_image_query_dims_error_points_at_the_image_model(settings):
    client = FakeClient({("POST", "/pics/_search"): api_error(
        400, "search_phase_execution_exception",
        "the query vector has a different number of dimensions [4] than the document vectors [8]")})
    with pytest.raises(DimsMismatch) as info:
        s.run(client, s.image_query([0.5] * 4, settings, s.SearchOptions(), index="pics"))
    assert "index.image_dims" in info.value.hint and "image_model.name" in info.value.hint


def test_rrf_license_error_hint(settings):
    client = FakeClient({("POST", "/pics/_search"): api_error(
        403, "security_exception", "current license is non-compliant for [rrf]")})
    with pytest.raises(LicenseError) as info:
        s.run(client, s.hybrid_query("x", settings, s.SearchOptions(hybrid=True), mode="rrf"))
    assert "--caption-weight" in info.value.hint


# ---------------------------------------------------------------------------------------------- search()


def test_search_needs_exactly_one_kind(settings):
    with pytest.raises(ValidationError, match="exactly one"):
        s.search(settings=settings)
    with pytest.raises(ValidationError, match="TEXT, --like"):
        s.search(settings=settings, text="x", like="d")
    with pytest.raises(ValidationError, match="need query TEXT"):
        s.search(settings=settings, like="d", options=s.SearchOptions(hybrid=True))


def test_dry_run_sends_nothing_and_reports_each_step(settings):
    seen = []
    outcome = s.search(settings=settings, text="a cat", on_step=seen.append)
    assert outcome.result is None and outcome.kind == "text" and outcome.mode == "knn"
    assert seen == outcome.steps and seen[0].request == s.text_query("a cat", settings)
    outcome = s.search(settings=settings, like="doc-1")
    assert [st.request.body.get("query") for st in outcome.steps][0] == {"ids": {"values": ["doc-1"]}}
    assert "response above" in outcome.steps[1].request.body["knn"]["query_vector"]
    assert outcome.as_json() == {"took_ms": 0, "total": 0, "hits": [], "kind": "like", "mode": "knn",
                                 "index": "pics"}


def test_like_search_reads_the_vector_then_searches_without_the_doc(settings):
    def answer(body):
        if "query" in body:
            return response(("doc-1", 1.0, {"image_embedding": [0.5, 0.5, 0.5, 0.5]}))
        return response(("doc-2", 0.99, {}))

    client = FakeClient({("POST", "/pics/_search"): answer})
    outcome = s.search(settings=settings, like="doc-1", client=client)
    assert [h.id for h in outcome.result.hits] == ["doc-2"]
    knn = client.calls[-1][2]["knn"]
    assert knn["query_vector"] == [0.5, 0.5, 0.5, 0.5]
    assert knn["filter"] == {"bool": {"must_not": [{"ids": {"values": ["doc-1"]}}]}}


@pytest.mark.parametrize(("license_type", "mode"), [("trial", "rrf"), ("enterprise", "rrf"),
                                                      ("platinum", "boosted_sum"), ("basic", "boosted_sum")])
def test_hybrid_picks_the_mode_from_the_license(settings, license_type, mode):
    client = FakeClient({("POST", "/pics/_search"): response()}, license_type=license_type)
    outcome = s.search(settings=settings, text="x", options=s.SearchOptions(hybrid=True), client=client)
    assert outcome.mode == mode and outcome.as_json()["mode"] == mode
    sent = client.calls[-1][2]
    assert ("retriever" in sent) == (mode == "rrf")


# ---------------------------------------------------------------------------------------------- images


class CountingEmbedder:
    """A fake ImageEmbedder: 4 dims, counts images."""

    def __init__(self):
        self.preprocessing = SimpleNamespace(target=8)
        self.images = []

    def embed(self, images):
        import numpy as np

        for image in images:
            self.images.append(image.size)
            yield np.array([0.1, 0.2, 0.30000001, 1 / 3], dtype=np.float32)


def png_bytes(size=(12, 10)) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", size, (200, 30, 30)).save(buf, format="PNG")
    return buf.getvalue()


def test_image_search_embeds_locally(settings, tmp_path):
    import numpy as np

    file = tmp_path / "q.png"
    file.write_bytes(png_bytes())
    embedder = CountingEmbedder()
    outcome = s.search(settings=settings, image=str(file), embedder=embedder)
    vector = outcome.steps[0].request.body["knn"]["query_vector"]
    assert embedder.images == [(12, 10)]
    # Short decimals that parse back to the same float32 values.
    assert np.array_equal(np.asarray(vector, dtype=np.float32),
                          np.array([0.1, 0.2, 0.30000001, 1 / 3], dtype=np.float32))
    assert all(len(repr(v)) <= 12 for v in vector)


def test_unreadable_images_fail_before_any_model_loads(settings, tmp_path):
    with pytest.raises(ImageError, match="file not found"):
        s.embed_query_image(tmp_path / "missing.jpg", settings)     # no embedder built: would need torch
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ImageError, match="not an image"):
        s.embed_query_image(bad, settings, embedder=CountingEmbedder())


@pytest.fixture
def http_server():
    payloads = {"/ok.png": png_bytes(), "/big.png": png_bytes((400, 400)) + b"\0" * 5000}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802
            data = payloads.get(self.path)
            if data is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_url_images_are_downloaded_with_a_cap(settings, http_server):
    settings.ingest.max_download_bytes = 4000
    settings.ingest.download_retries = 0
    embedder = CountingEmbedder()
    assert len(s.embed_query_image(f"{http_server}/ok.png", settings, embedder=embedder)) == 4
    with pytest.raises(ImageError, match="over the limit"):
        s.embed_query_image(f"{http_server}/big.png", settings, embedder=embedder)
    with pytest.raises(ImageError, match="HTTP 404"):
        s.embed_query_image(f"{http_server}/nope.png", settings, embedder=embedder)
    with pytest.raises(ImageError, match="download failed"):
        s.embed_query_image("http://127.0.0.1:9/x.png", settings, embedder=embedder)


# ---------------------------------------------------------------------------------------------- devtools


def _blocks(script: str) -> list[tuple[str, dict | None]]:
    """(request line, body) for every request in a console script; comments skipped."""
    out, current, body_lines = [], None, []
    for line in script.splitlines() + [""]:
        if line.startswith("#"):
            continue
        if not line.strip():
            if current:
                out.append((current, json.loads("\n".join(body_lines)) if body_lines else None))
            current, body_lines = None, []
        elif current is None:
            current = line
        else:
            body_lines.append(line)
    return out


def test_devtools_script_covers_setup_deploy_and_every_query_kind(settings):
    script = s.devtools_script(settings, text="a red car")
    blocks = _blocks(script)
    lines = [line for line, _ in blocks]
    assert lines[:5] == ["PUT _ingest/pipeline/toolkit-caption-embedding",
                         "PUT _component_template/toolkit-images-mappings",
                         "PUT _component_template/toolkit-images-settings",
                         "PUT _index_template/toolkit-images", "PUT pics-000001"]
    start = next(line for line in lines if "/deployment/_start" in line)
    assert start.startswith("POST _ml/trained_models/tiny-text/deployment/_start?")
    assert "number_of_allocations=1" in start and "deployment_id=tiny-text" in start
    assert "# PUT _ml/trained_models/tiny-text/definition/0..N" in script
    assert ("POST _ml/trained_models/tiny-text/_infer", {"docs": [{"text_field": "a red car"}]}) in blocks
    searches = [body for line, body in blocks if line == "POST pics/_search"]
    assert len(searches) == 6   # text, image, like lookup, like knn, hybrid rrf, hybrid boosted sum
    assert searches[0] == s.text_query("a red car", settings).body
    assert len(searches[1]["knn"]["query_vector"]) == 4
    assert "retriever" in searches[4] and isinstance(searches[5]["knn"], list)
