"""``toolkit.migrate`` against the test cluster: live searches never see an empty or half-filled index."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.lib.ingest_helpers import CountingEmbedder, good_images, make_settings, setup_index
from toolkit import migrate
from toolkit.cluster import make_client
from toolkit.errors import CheckFailed, ValidationError
from toolkit.images.sources import SourceItem
from toolkit.ingest import ingest

N = 12


class SmallerEmbedder(CountingEmbedder):
    """Another image model: 32 dims, another name (a different vector space)."""

    dims = 32
    model_name = "fake-clip-v2"

    def embed_batch(self, pixel_values: Any) -> np.ndarray:
        self.batches += 1
        self.embedded += int(pixel_values.shape[0])
        means = pixel_values.mean(dim=(2, 3)).numpy()
        out = np.full((pixel_values.shape[0], 32), 0.5, dtype=np.float32)
        out[:, 29:] -= means
        return out


@pytest.fixture
def env(escluster: Any, tmp_path: Path) -> Any:
    settings = make_settings(escluster.url)
    client = make_client(settings)
    setup_index(client, settings)
    images = good_images(tmp_path / "imgs", N)
    items = [SourceItem(location=str(p), id=f"doc{i:02d}", caption=f"photo number {i}",
                        label="even" if i % 2 == 0 else "odd") for i, p in enumerate(images)]
    report = ingest(client, settings, source=items, embedder=CountingEmbedder(),
                    failures_file=tmp_path / "ingest-failures.jsonl")
    assert report.indexed == N, report.as_json()

    class Env:
        pass

    e = Env()
    e.settings, e.client, e.cluster, e.images, e.tmp = settings, client, escluster, images, tmp_path  # type: ignore[attr-defined]
    return e


def _alias_target(client: Any, alias: str = "images") -> list[str]:
    return sorted(client.indices.get_alias(name=alias).body)


def _mapping(client: Any, index: str) -> dict[str, Any]:
    return dict(client.indices.get_mapping(index=index).body[index]["mappings"]["properties"])


class Searcher(threading.Thread):
    """Searches the alias in a loop: a match_all count (must always be N) and, while ``knn_dims`` is set,
    a kNN query with a vector of those dims (must always return hits)."""

    def __init__(self, client: Any, knn_dims: int | None) -> None:
        super().__init__(daemon=True)
        self.client, self.knn_dims = client, knn_dims
        self.stop = threading.Event()
        self.runs = 0
        self.bad: list[str] = []

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                total = self.client.search(index="images", size=0, track_total_hits=True)["hits"]["total"]["value"]
                if total != N:
                    self.bad.append(f"match_all saw {total} documents")
                if self.knn_dims:
                    vec = [1.0] * self.knn_dims
                    hits = self.client.search(index="images", knn={"field": "image_embedding", "query_vector": vec,
                                                                   "k": 5, "num_candidates": 20})["hits"]["hits"]
                    if not hits:
                        self.bad.append("kNN returned nothing")
            except Exception as exc:  # every failure counts, whatever it is
                self.bad.append(f"{type(exc).__name__}: {exc}")
            self.runs += 1


def _migrate(env: Any, settings: Any, **kwargs: Any) -> migrate.MigrationReport:
    current = migrate.read_current(env.client, settings)
    plan = migrate.make_plan(current, settings, image_model=kwargs.pop("image_model", "fake-clip"))
    assert plan.changes, "the settings differ: the plan must say so"
    return migrate.run_migration(env.client, settings, plan, failures_dir=env.tmp, **kwargs)


def test_live_searches_see_every_document_through_an_index_options_change_then_an_image_model_change(env: Any) -> None:
    # 1. index_options int8_hnsw -> int4_hnsw: a reindex, vectors copied (9.2 leaves them out of _source).
    int4 = make_settings(env.cluster.url, **{"index.index_options.type": "int4_hnsw"})
    searcher = Searcher(env.client, knn_dims=64)
    searcher.start()
    try:
        report = _migrate(env, int4)
    finally:
        searcher.stop.set()
        searcher.join(10)
    assert searcher.runs > 0 and searcher.bad == []
    assert report.switched and report.plan.kind == "reindex"
    assert _alias_target(env.client) == ["images-000002"]
    assert report.old_count == report.new_count == N
    assert _mapping(env.client, "images-000002")["image_embedding"]["index_options"]["type"] == "int4_hnsw"
    assert report.overlaps and min(report.overlaps.values()) == 1.0  # the same vectors: the same neighbours
    assert env.client.indices.get_alias(index="images-000002").body["images-000002"]["aliases"]["images"][
        "is_write_index"] is True

    # 2. a new image model with other dims: every image re-embedded from its stored path.
    v2 = make_settings(env.cluster.url, **{"index.index_options.type": "int4_hnsw", "index.image_dims": 32})
    embedder = SmallerEmbedder()
    searcher = Searcher(env.client, knn_dims=None)  # query vectors change with the model at the switch
    searcher.start()
    try:
        report = _migrate(env, v2, image_model="fake-clip-v2", embedder=embedder)
    finally:
        searcher.stop.set()
        searcher.join(10)
    assert searcher.runs > 0 and searcher.bad == []
    assert report.plan.kind == "re-embed images" and report.reembedded >= N and report.reembed_failed == 0
    assert _alias_target(env.client) == ["images-000003"]
    assert report.new_count == N
    assert _mapping(env.client, "images-000003")["image_embedding"]["dims"] == 32
    docs = env.client.search(index="images", size=N, source={"exclude_vectors": False})["hits"]["hits"]
    assert {d["_source"]["image_model"] for d in docs} == {"fake-clip-v2"}
    assert all(len(d["_source"]["image_embedding"]) == 32 for d in docs)
    assert {d["_source"]["caption"] for d in docs} == {f"photo number {i}" for i in range(N)}

    # 3. rollback points the alias back at the index before; nothing deleted.
    back = migrate.rollback(env.client, v2)
    assert back.restored == "images-000002" and _alias_target(env.client) == ["images-000002"]
    assert env.client.count(index="images")["count"] == N
    assert env.client.indices.exists(index="images-000003")


def test_documents_written_during_the_migration_are_caught_up_before_and_after_the_switch(env: Any) -> None:
    int4 = make_settings(env.cluster.url, **{"index.index_options.type": "int4_hnsw"})

    def write(doc_id: str) -> None:
        env.client.index(index="images", id=doc_id, refresh=True, document={
            "image_embedding": [1.0] * 64, "path": f"/late/{doc_id}.jpg",
            "ingested_at": migrate._iso(migrate.datetime.now(migrate.UTC))})

    def on_step(step: str) -> None:
        if step == "catch-up":
            write("during-copy")  # lands in the old index after the copy
        if step == "switch":
            write("before-switch")  # lands in the old index after the last catch-up

    report = _migrate(env, int4, on_step=on_step)
    assert report.switched
    ids = {h["_id"] for h in env.client.search(index="images", size=50)["hits"]["hits"]}
    assert {"during-copy", "before-switch"} <= ids
    assert report.new_count == N + 2 and report.after_switch == 1


def test_a_missing_image_blocks_the_switch_and_a_second_run_resumes_into_the_same_index(env: Any) -> None:
    v2 = make_settings(env.cluster.url, **{"index.image_dims": 32})
    lost = env.images[3]
    data = lost.read_bytes()
    lost.unlink()
    with pytest.raises(CheckFailed) as info:
        _migrate(env, v2, image_model="fake-clip-v2", embedder=SmallerEmbedder())
    report = info.value.results
    assert report.reembed_failed >= 1 and not report.switched
    assert _alias_target(env.client) == ["images-000001"]  # searchers never saw the half-filled index
    assert any("doc03" in Path(f).read_text() for f in report.failures_files)
    lost.write_bytes(data)
    embedder = SmallerEmbedder()
    current = migrate.read_current(env.client, v2)
    plan = migrate.make_plan(current, v2, image_model="fake-clip-v2")
    assert plan.resume and plan.target == "images-000002"
    report = migrate.run_migration(env.client, v2, plan, embedder=embedder, failures_dir=env.tmp)
    assert report.switched and report.new_count == N
    assert _alias_target(env.client) == ["images-000002"]


def test_cleanup_deletes_only_older_indices_and_only_when_asked(env: Any) -> None:
    int4 = make_settings(env.cluster.url, **{"index.index_options.type": "int4_hnsw"})
    _migrate(env, int4)
    assert env.client.indices.exists(index="images-000001")  # a migration never deletes
    assert migrate.cleanup(env.client, int4).indices == ("images-000001",)
    assert not env.client.indices.exists(index="images-000001")
    assert env.client.count(index="images")["count"] == N
    with pytest.raises(ValidationError, match="no index older"):
        migrate.cleanup(env.client, int4)
    with pytest.raises(ValidationError, match="no older index"):
        migrate.rollback(env.client, int4)


def test_unchanged_settings_plan_nothing(env: Any) -> None:
    plan = migrate.make_plan(migrate.read_current(env.client, env.settings), env.settings,
                             image_model="fake-clip")
    assert plan.changes == ()
    assert "nothing to migrate" in migrate.render_plan(plan, env.settings)


def test_plan_names_each_change_and_leaves_vectors_in_the_copy_only_when_they_stay_valid(env: Any) -> None:
    shards = make_settings(env.cluster.url, **{"index.shards": 2, "index.index_options.type": "bbq_hnsw"})
    plan = migrate.make_plan(migrate.read_current(env.client, shards), shards, image_model="fake-clip")
    assert "number_of_shards: 1 -> 2" in plan.changes
    assert any(c.startswith("image_embedding.index_options.type: int8_hnsw -> bbq_hnsw") for c in plan.changes)
    body = plan.copy_request().body
    assert "_source" not in body["source"] and body["dest"]["pipeline"] == "_none"
    assert body["dest"]["op_type"] == "create" and body["conflicts"] == "proceed"
    v2 = make_settings(env.cluster.url, **{"index.image_dims": 32})
    plan = migrate.make_plan(migrate.read_current(env.client, v2), v2, image_model="fake-clip-v2")
    assert plan.reembed_images
    assert plan.copy_request().body["source"]["_source"] == {"excludes": ["image_embedding", "image_model",
                                                                          "image_precision"]}


def test_deletes_and_writes_without_ingested_at_during_the_migration_are_reconciled_by_id(env: Any) -> None:
    int4 = make_settings(env.cluster.url, **{"index.index_options.type": "int4_hnsw"})

    def on_step(step: str) -> None:
        if step == "catch-up":
            env.client.delete(index="images", id="doc05", refresh=True)
            # Another tool's write: no ingested_at, so the time-based catch-up cannot see it.
            env.client.index(index="images", id="foreign", refresh=True,
                             document={"image_embedding": [1.0] * 64, "url": "https://example.org/a.jpg"})

    report = _migrate(env, int4, on_step=on_step)
    assert report.switched and report.removed == 1 and report.problems == []
    ids = {h["_id"] for h in env.client.search(index="images", size=50)["hits"]["hits"]}
    assert "doc05" not in ids and "foreign" in ids and len(ids) == N


def test_a_document_the_new_mapping_rejects_stops_the_copy_and_leaves_the_alias(env: Any) -> None:
    from toolkit.errors import RequestFailed

    # A field only the old index maps (added by hand): the new strict template does not know it.
    env.client.indices.put_mapping(index="images-000001", properties={"legacy": {"type": "keyword"}})
    env.client.update(index="images", id="doc01", doc={"legacy": "x"}, refresh=True)
    int4 = make_settings(env.cluster.url, **{"index.index_options.type": "int4_hnsw"})
    with pytest.raises(RequestFailed, match="doc01") as info:
        _migrate(env, int4)
    assert "strict_dynamic_mapping_exception" in info.value.message and "legacy" in info.value.message
    assert _alias_target(env.client) == ["images-000001"]


def test_an_interrupted_or_failed_switch_leaves_the_alias_and_the_next_run_resumes(env: Any) -> None:
    from toolkit.errors import ClusterError

    int4 = make_settings(env.cluster.url, **{"index.index_options.type": "int4_hnsw"})

    def stop(step: str) -> None:
        if step == "verify":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _migrate(env, int4, on_step=stop)
    assert _alias_target(env.client) == ["images-000001"]
    env.cluster.faults.add({"fail_requests": 1, "status": 500, "path_prefix": "/_aliases"})
    with pytest.raises(ClusterError):
        _migrate(env, int4)
    assert _alias_target(env.client) == ["images-000001"]
    report = _migrate(env, int4)
    assert report.plan.resume and report.plan.target == "images-000002" and report.switched
    assert _alias_target(env.client) == ["images-000002"] and report.new_count == N


def test_a_new_image_model_with_other_dims_than_the_settings_is_refused_before_any_change(env: Any) -> None:
    from toolkit.errors import DimsMismatch

    wrong = make_settings(env.cluster.url)  # still 64 dims, but the new model gives 32
    with pytest.raises(DimsMismatch, match="outputs 32 dims") as info:
        _migrate(env, wrong, image_model="fake-clip-v2", embedder=SmallerEmbedder())
    assert "--image-dims 32" in (info.value.hint or "")
    assert not env.client.indices.exists(index="images-000002")


def test_a_renamed_pipeline_is_installed_with_the_new_index(env: Any) -> None:
    renamed = make_settings(env.cluster.url, **{"index.pipeline": "captions-v2"})
    plan = migrate.make_plan(migrate.read_current(env.client, renamed), renamed, image_model="fake-clip")
    assert "default_pipeline: toolkit-caption-embedding -> captions-v2" in plan.changes
    assert [a.name for a in plan.assets if a.kind == "pipeline"] == ["captions-v2"]
    same = migrate.make_plan(migrate.read_current(env.client, env.settings), env.settings, image_model="fake-clip")
    assert [a for a in same.assets if a.kind == "pipeline"] == []  # the live pipeline is left as it is


def test_an_abandoned_new_index_is_resumed_only_when_it_matches_the_settings(env: Any) -> None:
    two = make_settings(env.cluster.url, **{"index.shards": 2})

    def stop(step: str) -> None:
        if step == "verify":
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _migrate(env, two, on_step=stop)
    again = migrate.make_plan(migrate.read_current(env.client, two), two, image_model="fake-clip")
    assert again.resume and again.target == "images-000002"
    other = make_settings(env.cluster.url, **{"index.index_options.type": "int4_hnsw"})
    fresh = migrate.make_plan(migrate.read_current(env.client, other), other, image_model="fake-clip")
    assert not fresh.resume and fresh.target == "images-000003"  # 000002 has 2 shards and int8_hnsw


def test_documents_of_a_second_image_model_make_every_image_re_embedded(env: Any) -> None:
    class Other(CountingEmbedder):
        model_name = "fake-clip-other"

    extra = [SourceItem(location=str(p), id=f"other{i}")
             for i, p in enumerate(good_images(env.tmp / "more", 2, prefix="more"))]
    ingest(env.client, env.settings, source=extra, embedder=Other(), failures_file=env.tmp / "x.jsonl")
    plan = migrate.make_plan(migrate.read_current(env.client, env.settings), env.settings, image_model="fake-clip")
    assert plan.reembed_images and "image model: fake-clip, fake-clip-other -> fake-clip" in plan.changes


def test_an_old_model_writer_after_the_switch_is_reported(env: Any) -> None:
    same_dims = make_settings(env.cluster.url)

    def old_writer(step: str) -> None:
        if step == "after-switch":  # the alias has moved; this job still runs the old model
            env.client.index(index="images", id="stale", refresh=True, document={
                "image_embedding": [1.0] * 64, "path": "/x.jpg", "image_model": "fake-clip"})

    class SameDims(CountingEmbedder):
        model_name = "fake-clip-v3"

    report = _migrate(env, same_dims, image_model="fake-clip-v3", embedder=SameDims(), on_step=old_writer)
    assert report.switched and len(report.warnings) == 1
    assert "1 document(s) in images-000002 were written with another image model" in report.warnings[0]


def test_a_pipeline_that_drops_the_new_vector_ends_the_re_embedding_and_blocks_the_switch(env: Any) -> None:
    dropping = make_settings(env.cluster.url, **{"index.image_dims": 32, "index.pipeline": "drops-vectors"})

    def on_step(step: str) -> None:
        if step == "copy":  # after the plan installed its pipeline: make it lose the vector
            env.client.ingest.put_pipeline(id="drops-vectors", processors=[
                {"remove": {"field": "image_embedding", "ignore_missing": True}}])

    with pytest.raises(CheckFailed, match="could not be re-embedded"):
        _migrate(env, dropping, image_model="fake-clip-v2", embedder=SmallerEmbedder(), on_step=on_step)
    assert _alias_target(env.client) == ["images-000001"]
