"""Ingest against the test cluster: every item ends indexed, skipped or failed; 429s; resume; retries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.lib.ingest_helpers import (
    DIMS,
    CountingEmbedder,
    count_docs,
    good_images,
    jpeg_bytes,
    make_settings,
    mixed_folder,
    setup_index,
)
from toolkit.cluster import make_client
from toolkit.errors import ConnectionFailed, DimsMismatch, NotFound, ValidationError
from toolkit.images.sources import FailuresSource, open_source
from toolkit.ingest import ingest


@pytest.fixture
def env(escluster: Any, tmp_path: Path) -> Any:
    """A set-up index on a fresh test cluster; ``env.run(source, **kw)`` ingests with a counting fake."""

    class Env:
        def __init__(self, **overrides: Any) -> None:
            self.settings = make_settings(escluster.url, **overrides)
            self.client = make_client(self.settings)

        def run(self, source: Any, *, embedder: CountingEmbedder | None = None, **kwargs: Any) -> Any:
            kwargs.setdefault("failures_file", tmp_path / "failures.jsonl")
            return ingest(self.client, self.settings, source=source, embedder=embedder or CountingEmbedder(),
                          **kwargs)

    e = Env()
    setup_index(e.client, e.settings)
    e.cluster = escluster  # type: ignore[attr-defined]
    e.make = Env  # type: ignore[attr-defined]
    return e


def _failures(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


def _adds_up(report: Any) -> None:
    assert report.seen == report.indexed + report.skipped + report.failed


def test_folder_with_broken_images_ends_with_exact_counts_and_a_failures_file(env: Any, tmp_path: Path) -> None:
    expect = mixed_folder(tmp_path / "imgs")
    report = env.run(open_source(tmp_path / "imgs"))
    _adds_up(report)
    outcomes = list(expect.values())
    assert report.seen == len(expect)
    assert (report.indexed, report.skipped, report.failed) == (
        outcomes.count("indexed"), outcomes.count("skipped"), outcomes.count("failed"))
    assert report.ignored_files == 1  # notes.txt: not an image extension, not an item
    assert report.skipped_reasons == {"duplicate id in the source": 1}
    assert "first seen at plain.jpg" in report.skipped_examples[0]["reason"]
    failures = {Path(r["location"]).name: r for r in _failures(report.failures_file)}
    assert set(failures) == {name for name, outcome in expect.items() if outcome == "failed"}
    assert "truncated" in failures["truncated.jpg"]["reason"]
    assert "empty" in failures["empty.jpg"]["reason"]
    assert "not an image" in failures["text.jpg"]["reason"]
    assert "decompression bomb" in failures["bomb.png"]["reason"] or "too large" in failures["bomb.png"]["reason"]
    assert count_docs(env.client, env.settings) == report.indexed
    # The EXIF-rotated photo (100x40 stored, orientation 6) is indexed with its displayed size.
    rotated = str(tmp_path / "imgs/rotated.jpg")
    hits = env.client.search(index=env.settings.index.alias, query={"term": {"path": rotated}},
                             source_includes=["width", "height", "image_model"])["hits"]["hits"]
    assert hits[0]["_source"] == {"width": 40, "height": 100, "image_model": "fake-clip"}


def test_injected_429s_still_index_everything(env: Any, tmp_path: Path) -> None:
    good_images(tmp_path / "imgs", 10)
    env.cluster.faults.add({"bulk_429_items": 6})
    small = env.make(**{"ingest.chunk_size": 4})
    report = small.run(open_source(tmp_path / "imgs"))
    assert (report.indexed, report.failed) == (10, 0)
    assert count_docs(env.client, env.settings) == 10


def test_interrupted_run_then_resume_indexes_each_item_once_and_embeds_only_the_rest(
        env: Any, tmp_path: Path) -> None:
    good_images(tmp_path / "imgs", 12)
    small = env.make(**{"ingest.chunk_size": 4})

    def stop_after_five(progress: Any) -> None:
        if progress.indexed >= 5:
            raise KeyboardInterrupt

    first = small.run(open_source(tmp_path / "imgs"), on_progress=stop_after_five)
    assert first.interrupted and not first.complete
    _adds_up(first)
    present = count_docs(env.client, env.settings)
    assert 5 <= present < 12

    embedder = CountingEmbedder()
    second = small.run(open_source(tmp_path / "imgs"), embedder=embedder, resume=True,
                       failures_file=tmp_path / "second.jsonl")
    assert second.complete
    assert (second.seen, second.skipped, second.indexed, second.failed) == (12, present, 12 - present, 0)
    assert second.skipped_reasons == {"already indexed": present}
    assert embedder.embedded == 12 - present  # nothing already indexed was embedded again
    assert count_docs(env.client, env.settings) == 12
    ids = [h["_id"] for h in env.client.search(index=env.settings.index.alias, size=50)["hits"]["hits"]]
    assert all(env.client.get(index=env.settings.index.alias, id=i)["_version"] == 1 for i in ids)


def test_lost_cluster_stops_with_an_error_then_resume_finishes(env: Any, tmp_path: Path) -> None:
    good_images(tmp_path / "imgs", 8)
    small = env.make(**{"ingest.chunk_size": 4})
    env.cluster.faults.add({"drop_connections": 1000, "path_prefix": "/_bulk"})
    report = small.run(open_source(tmp_path / "imgs"))
    assert isinstance(report.error, ConnectionFailed)
    _adds_up(report)
    assert report.indexed == 0 and report.failed >= 1
    records = _failures(report.failures_file)
    # "no answer" only for the chunk really sent; items read but never sent have their own reason.
    sent = [r for r in records if r["stage"] == "index"]
    assert len(sent) == 4 and all("no answer from the cluster" in r["reason"] for r in sent)
    assert all(r["stage"] == "not sent" and "not sent" in r["reason"] for r in records if r not in sent)
    env.cluster.faults.clear()
    again = small.run(open_source(tmp_path / "imgs"), resume=True, failures_file=tmp_path / "again.jsonl")
    assert (again.indexed, again.failed, again.error) == (8, 0, None)
    assert count_docs(env.client, env.settings) == 8


def test_retry_failures_retries_exactly_the_failed_items(env: Any, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    good_images(folder, 3)
    (folder / "later.jpg").write_bytes(b"not yet an image")
    first = env.run(open_source(folder))
    assert (first.indexed, first.failed) == (3, 1)
    # The user fixes the file; the retry reads only the failures file.
    (folder / "later.jpg").write_bytes(jpeg_bytes((90, 70), color=(1, 2, 3)))
    embedder = CountingEmbedder()
    retry = env.run(FailuresSource(Path(first.failures_file)), embedder=embedder,
                    failures_file=tmp_path / "retry.jsonl")
    assert (retry.seen, retry.indexed, retry.failed) == (1, 1, 0)
    assert embedder.embedded == 1
    assert retry.failures_file is None  # nothing failed: no file written
    assert count_docs(env.client, env.settings) == 4


def test_pipeline_errors_are_counted_as_failed(escluster: Any, tmp_path: Path) -> None:
    settings = make_settings(escluster.url)
    client = make_client(settings)
    setup_index(client, settings, plain_pipeline=False)  # the text model is not deployed: inference fails
    paths = good_images(tmp_path, 3)
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"id,path,caption\na,{paths[0].name},a red square\nb,{paths[1].name},\n"
                        f"c,{paths[2].name},a blue square\n")
    report = ingest(client, settings, source=open_source(manifest), embedder=CountingEmbedder(),
                    failures_file=tmp_path / "f.jsonl")
    _adds_up(report)
    assert (report.indexed, report.failed, report.failed_reasons) == (1, 2, {"pipeline": 2})
    records = _failures(report.failures_file)
    assert sorted(r["id"] for r in records) == ["a", "c"]
    assert all(r["stage"] == "pipeline" and r["caption"] for r in records)


def test_manifest_fields_reach_the_document(env: Any, tmp_path: Path) -> None:
    paths = good_images(tmp_path, 2)
    manifest = tmp_path / "products.csv"
    manifest.write_text(f"id,path,caption,label,relation_id,color\n"
                        f"p1,{paths[0].name},red shoe,shoes,g1,red\np1,{paths[1].name},dup,shoes,g1,blue\n")
    report = env.run(open_source(manifest))
    assert (report.indexed, report.skipped) == (1, 1)
    doc = env.client.get(index=env.settings.index.alias, id="p1")["_source"]
    assert doc["caption"] == "red shoe" and doc["label"] == "shoes" and doc["relation_id"] == "g1"
    assert doc["metadata"] == {"color": "red"} and doc["path"] == str(paths[0])
    assert len(doc["content_sha256"]) == 64 and doc["ingested_at"]


def test_missing_index_and_dims_mismatch_fail_before_any_work(escluster: Any, tmp_path: Path) -> None:
    settings = make_settings(escluster.url)
    client = make_client(settings)
    embedder = CountingEmbedder()
    with pytest.raises(NotFound) as info:
        ingest(client, settings, source=[], embedder=embedder)
    assert "toolkit setup" in (info.value.hint or "")
    setup_index(client, settings)
    embedder.dims = DIMS * 2
    with pytest.raises(DimsMismatch) as mismatch:
        ingest(client, settings, source=open_source(tmp_path), embedder=embedder)
    assert str(DIMS) in mismatch.value.message and str(DIMS * 2) in mismatch.value.message
    assert embedder.embedded == 0


def test_tiny_clip_model_end_to_end(env: Any, tmp_path: Path) -> None:
    from tests.models import tiny_clip_model
    from toolkit.ingest import load_embedder

    clip = env.make(**{"image_model.name": str(tiny_clip_model()), "image_model.device": "cpu"})
    good_images(tmp_path / "imgs", 3)
    report = ingest(clip.client, clip.settings, source=open_source(tmp_path / "imgs"),
                    embedder=load_embedder(clip.settings), failures_file=tmp_path / "f.jsonl")
    assert (report.indexed, report.failed) == (3, 0)
    hit = clip.client.search(index=clip.settings.index.alias, size=1,
                             source_excludes=["image_embedding"])["hits"]["hits"][0]["_source"]
    assert hit["image_model"] == str(tiny_clip_model())


def test_unwritable_failures_file_fails_before_any_work(env: Any, tmp_path: Path) -> None:
    # It was a traceback (IsADirectoryError) at the first failed item, mid-run.
    good_images(tmp_path / "imgs", 1)
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"not an image")
    embedder = CountingEmbedder()
    not_a_folder = tmp_path / "file"
    not_a_folder.write_text("")
    for bad in (tmp_path / "imgs", not_a_folder / "failures.jsonl"):
        with pytest.raises(ValidationError, match="failures file") as info:
            env.run(open_source(tmp_path / "imgs"), embedder=embedder, failures_file=bad)
        assert "--failures-file" in (info.value.hint or "")
    assert embedder.embedded == 0
