"""The Ray engine against the test cluster: the same ids, vectors and outcomes as the local engine;
a killed actor leaves no gap and no duplicate; --resume skips what is indexed.

One local Ray session for the module (2 CPUs, no dashboard); the workers import this module (the
embedder factories below), so the repository root is on their PYTHONPATH.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from tests.lib.ingest_helpers import (
    DIMS,
    CountingEmbedder,
    count_docs,
    good_images,
    make_settings,
    mixed_folder,
    setup_index,
)
from toolkit.cluster import make_client
from toolkit.errors import ValidationError
from toolkit.images.sources import open_source
from toolkit.ingest import ingest

ray = pytest.importorskip("ray", reason='Ray is not installed: pip install "toolkit[ray]" (or ".[dev]")')

from toolkit.ingest.ray_engine import RayOptions, import_ray, ingest_ray  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def ray_session() -> Iterator[None]:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, address="local",
             runtime_env={"env_vars": {"PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}})
    yield
    ray.shutdown()


class DiesOnceEmbedder(CountingEmbedder):
    """Kills its actor process (``os._exit``) on its first batch, once per marker file."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def embed_batch(self, pixel_values: Any) -> np.ndarray:
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return super().embed_batch(pixel_values)
        os.close(fd)
        os._exit(1)


class LoggingEmbedder(CountingEmbedder):
    """Appends the number of images of each batch to a file (the actors run in other processes)."""

    def __init__(self, log: str) -> None:
        super().__init__()
        self.log = log

    def embed_batch(self, pixel_values: Any) -> np.ndarray:
        with open(self.log, "a") as fh:
            fh.write(f"{pixel_values.shape[0]}\n")
        return super().embed_batch(pixel_values)


class Factory:
    """A picklable embedder factory: ``cls(*args)`` in each actor."""

    def __init__(self, cls: type, *args: Any) -> None:
        self.cls, self.args = cls, args

    def __call__(self) -> Any:
        return self.cls(*self.args)


def _env(escluster_factory: Any) -> Any:
    cluster = escluster_factory()
    settings = make_settings(cluster.url)
    client = make_client(settings)
    setup_index(client, settings)
    return settings, client


def _docs(client: Any, settings: Any) -> dict[str, dict[str, Any]]:
    client.indices.refresh(index=settings.index.alias)
    hits = client.search(index=settings.index.alias, size=1000,
                         source={"exclude_vectors": False})["hits"]["hits"]
    return {h["_id"]: h["_source"] for h in hits}


def _assert_same_documents(local: dict[str, Any], remote: dict[str, Any], vector_field: str) -> None:
    assert sorted(remote) == sorted(local)
    for doc_id, doc in local.items():
        a = np.asarray(doc[vector_field], dtype=np.float64)
        b = np.asarray(remote[doc_id][vector_field], dtype=np.float64)
        assert float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b))) == pytest.approx(1.0, abs=1e-9)
        same = {k: v for k, v in doc.items() if k not in (vector_field, "ingested_at")}
        assert {k: v for k, v in remote[doc_id].items() if k not in (vector_field, "ingested_at")} == same


def _counts(report: Any) -> tuple[int, int, int, int]:
    return report.seen, report.indexed, report.skipped, report.failed


def _failures(report: Any) -> list[tuple[str, str]]:
    if not report.failures_file:
        return []
    rows = [json.loads(line) for line in Path(report.failures_file).read_text().splitlines()]
    return sorted((Path(r["location"]).name, r["stage"]) for r in rows)


def test_folder_through_ray_gives_the_local_ids_vectors_and_outcomes(escluster_factory: Any, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    mixed_folder(folder)  # broken, duplicate, rotated, CMYK, 16-bit, palette, animated images
    good_images(folder, 6)
    s_local, c_local = _env(escluster_factory)
    s_ray, c_ray = _env(escluster_factory)
    local = ingest(c_local, s_local, source=open_source(folder), embedder=CountingEmbedder(),
                   failures_file=tmp_path / "local.jsonl")
    remote = ingest_ray(c_ray, s_ray, source=open_source(folder), embedder_factory=CountingEmbedder,
                        failures_file=tmp_path / "ray.jsonl", options=RayOptions(writers=2))
    assert _counts(remote) == _counts(local)
    assert remote.skipped_reasons == local.skipped_reasons == {"duplicate id in the source": 1}
    assert remote.failed_reasons == local.failed_reasons
    assert _failures(remote) == _failures(local)
    assert remote.ignored_files == local.ignored_files == 1
    _assert_same_documents(_docs(c_local, s_local), _docs(c_ray, s_ray), s_local.fields.image_vector)


def test_manifest_through_ray_gives_the_local_ids_and_vectors(escluster_factory: Any, tmp_path: Path) -> None:
    paths = good_images(tmp_path / "imgs", 7)
    lines = ["id,path,caption,label"]
    lines += [f"p{i},imgs/{p.name},photo {i},l{i % 2}" for i, p in enumerate(paths)]
    lines += ["p1,imgs/img002.jpg,again,x", "p9,imgs/missing.jpg,gone,x"]  # a duplicate id, a missing file
    manifest = tmp_path / "photos.csv"
    manifest.write_text("\n".join(lines) + "\n")
    s_local, c_local = _env(escluster_factory)
    s_ray, c_ray = _env(escluster_factory)
    local = ingest(c_local, s_local, source=open_source(manifest), embedder=CountingEmbedder(),
                   failures_file=tmp_path / "local.jsonl")
    remote = ingest_ray(c_ray, s_ray, source=open_source(manifest), embedder_factory=CountingEmbedder,
                        failures_file=tmp_path / "ray.jsonl")
    assert _counts(remote) == _counts(local) == (9, 7, 1, 1)
    assert _failures(remote) == _failures(local) == [("missing.jpg", "read")]
    docs = _docs(c_ray, s_ray)
    assert sorted(docs) == [f"p{i}" for i in range(7)]
    assert docs["p1"]["caption"] == "photo 1"  # the first row with the id wins, as locally
    _assert_same_documents(_docs(c_local, s_local), docs, s_local.fields.image_vector)


def test_a_killed_actor_and_429s_leave_no_gap_and_no_duplicate(escluster_factory: Any, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    good_images(folder, 10)
    s_local, c_local = _env(escluster_factory)
    cluster = escluster_factory()
    s_ray = make_settings(cluster.url, **{"ingest.chunk_size": 4})
    c_ray = make_client(s_ray)
    setup_index(c_ray, s_ray)
    cluster.faults.add({"bulk_429_items": 6})  # the cluster is busy too: retried with backoff
    marker = tmp_path / "died"
    ingest(c_local, s_local, source=open_source(folder), embedder=CountingEmbedder(),
           failures_file=tmp_path / "local.jsonl")
    remote = ingest_ray(c_ray, s_ray, source=open_source(folder), failures_file=tmp_path / "ray.jsonl",
                        embedder_factory=Factory(DiesOnceEmbedder, str(marker)), options=RayOptions(writers=2))
    assert marker.exists()  # an actor did die on its first batch
    assert _counts(remote) == (10, 10, 0, 0)
    assert remote.failures_file is None
    assert count_docs(c_ray, s_ray) == 10
    docs = _docs(c_ray, s_ray)
    assert all(c_ray.get(index=s_ray.index.alias, id=i)["_version"] == 1 for i in docs)  # each written once
    _assert_same_documents(_docs(c_local, s_local), docs, s_local.fields.image_vector)


def test_interrupted_run_then_resume_indexes_each_item_once_and_embeds_only_the_rest(
        escluster_factory: Any, tmp_path: Path) -> None:
    folder = tmp_path / "imgs"
    good_images(folder, 12)
    cluster = escluster_factory()
    settings = make_settings(cluster.url, **{"ingest.chunk_size": 4})
    client = make_client(settings)
    setup_index(client, settings)

    def stop_after_five(progress: Any) -> None:
        if progress.indexed >= 5:
            raise KeyboardInterrupt

    first = ingest_ray(client, settings, source=open_source(folder), embedder_factory=CountingEmbedder,
                       on_progress=stop_after_five, failures_file=tmp_path / "first.jsonl")
    assert first.interrupted and not first.complete
    assert first.seen == first.indexed + first.skipped + first.failed == 12  # every item accounted for
    present = count_docs(client, settings)
    assert 5 <= present < 12
    # Each item not counted as indexed is in the failures file, to be retried ("may be indexed" for
    # the chunk in flight when the run stopped, as locally).
    assert len(Path(str(first.failures_file)).read_text().splitlines()) == first.failed == 12 - first.indexed

    log = tmp_path / "batches.log"
    second = ingest_ray(client, settings, source=open_source(folder), resume=True,
                        embedder_factory=Factory(LoggingEmbedder, str(log)), failures_file=tmp_path / "second.jsonl")
    assert second.complete
    assert _counts(second) == (12, 12 - present, present, 0)
    assert second.skipped_reasons == {"already indexed": present}
    assert sum(int(n) for n in log.read_text().split()) == 12 - present  # the indexed ones not embedded again
    assert count_docs(client, settings) == 12
    assert all(client.get(index=settings.index.alias, id=i)["_version"] == 1 for i in _docs(client, settings))


def test_cli_engine_ray_agrees_with_the_local_engine_item_for_item(escluster_factory: Any, tmp_path: Path) -> None:
    from tests.models import tiny_clip_model
    from toolkit.cli import app

    model = str(tiny_clip_model())
    folder = tmp_path / "photos"
    good_images(folder, 5)
    results = {}
    for engine in ("local", "ray"):
        cluster = escluster_factory()
        settings = make_settings(cluster.url, **{"image_model.name": model})
        setup_index(make_client(settings), settings)
        config = tmp_path / f"{engine}.yaml"
        config.write_text(f"elasticsearch:\n  url: {cluster.url}\nindex:\n  image_dims: {DIMS}\n"
                          f"image_model:\n  name: {model}\n  device: cpu\n  batch_size: 4\n  precision: fp32\n")
        result = runner.invoke(app, ["ingest", str(folder), "--engine", engine, "--json", "--config", str(config)])
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert (summary["seen"], summary["indexed"], summary["complete"]) == (5, 5, True)
        assert summary["precision"]["used"] == "fp32"
        results[engine] = _docs(make_client(settings), settings)
    _assert_same_documents(results["local"], results["ray"], "image_embedding")


def test_cli_refuses_an_unknown_engine_and_a_stray_ray_address(tmp_path: Path) -> None:
    from toolkit.cli import app

    good_images(tmp_path / "imgs", 1)
    bad = runner.invoke(app, ["ingest", str(tmp_path / "imgs"), "--engine", "spark"])
    assert bad.exit_code == ValidationError.exit_code
    assert "--engine local | ray" in bad.output
    stray = runner.invoke(app, ["ingest", str(tmp_path / "imgs"), "--ray-address", "auto"])
    assert stray.exit_code == ValidationError.exit_code
    assert "--engine ray" in stray.output


def test_without_ray_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_ray(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ValidationError) as info:
        import_ray()
    assert 'pip install "toolkit[ray]"' in (info.value.hint or "")


def test_a_model_that_cannot_load_in_the_actors_stops_with_its_own_error(escluster_factory: Any,
                                                                         tmp_path: Path) -> None:
    from toolkit.errors import ModelError

    good_images(tmp_path / "imgs", 2)
    cluster = escluster_factory()
    settings = make_settings(cluster.url, **{"image_model.name": str(tmp_path / "no-such-model")})
    setup_index(make_client(settings), settings)
    report = ingest_ray(make_client(settings), settings, source=open_source(tmp_path / "imgs"),
                        failures_file=tmp_path / "failures.jsonl")
    assert isinstance(report.error, ModelError)  # not a Ray traceback: the CLI prints it with its hint
    assert "no-such-model" in report.error.message and "--image-model" in (report.error.hint or "")
    assert _counts(report) == (2, 0, 0, 2) and report.failed_reasons == {"not sent": 2}


def test_an_unreachable_ray_address_fails_at_once_without_calling_ray_init() -> None:
    """ray.init retries an address nobody answers for minutes, then fails with no clear word."""
    import socket

    from toolkit.errors import ConnectionFailed
    from toolkit.ingest.ray_engine import connect

    class FakeRay:
        inits = 0

        def is_initialized(self) -> bool:
            return False

        def init(self, **kwargs: object) -> None:
            FakeRay.inits += 1

    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens on it now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        with pytest.raises(ConnectionFailed, match="nothing answers there") as info:
            connect(FakeRay(), address)
        assert info.value.exit_code == 11 and "--ray-address" in (info.value.hint or "")
    assert FakeRay.inits == 0
