"""``toolkit migrate``: the dry-run plan in Kibana form, a migration, rollback and cleanup from the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import requests
from typer.testing import CliRunner

from tests.lib.ingest_helpers import DIMS, CountingEmbedder, good_images, make_settings, setup_index
from toolkit.cli import app
from toolkit.cluster import make_client
from toolkit.images.sources import SourceItem
from toolkit.ingest import ingest

runner = CliRunner()


def _setup(url: str, tmp: Path, n: int = 4) -> Any:
    settings = make_settings(url)
    client = make_client(settings)
    setup_index(client, settings)
    items = [SourceItem(location=str(p), id=f"d{i}") for i, p in enumerate(good_images(tmp / "imgs", n))]
    assert ingest(client, settings, source=items, embedder=CountingEmbedder(),
                  failures_file=tmp / "f.jsonl").indexed == n
    return settings


def migrate(url: str, *args: str) -> tuple[int, str]:
    # The image model the documents name (CountingEmbedder.model_name) and its dims: no re-embedding.
    result = runner.invoke(app, ["migrate", "--es-url", url, "--image-model", "fake-clip",
                                 "--image-dims", str(DIMS), *args])
    return result.exit_code, result.output


def _alias(url: str) -> list[str]:
    return sorted(requests.get(f"{url}/_alias/images").json())


def test_dry_run_prints_the_plan_as_console_requests_and_changes_nothing(escluster: Any, tmp_path: Path) -> None:
    _setup(escluster.url, tmp_path)
    before = requests.get(f"{escluster.url}/_cat/indices?format=json").json()
    code, out = migrate(escluster.url, "--index-options", "int4_hnsw", "--dry-run")
    assert code == 0, out
    assert "# toolkit migrate: images images-000001 -> images-000002" in out
    assert "image_embedding.index_options.type: int8_hnsw -> int4_hnsw" in out
    assert "PUT images-000002\n{}" in out
    assert "POST _reindex?wait_for_completion=false&refresh=true" in out
    assert '"remove": {\n        "index": "images-000001",\n        "alias": "images"' in out
    assert '"is_write_index": true' in out
    assert requests.get(f"{escluster.url}/_cat/indices?format=json").json() == before
    assert _alias(escluster.url) == ["images-000001"]
    code, out = migrate(escluster.url, "--index-options", "int4_hnsw", "--dry-run", "--json")
    assert code == 0, out
    parsed = json.loads(out)
    assert parsed["plan"]["to"] == "images-000002" and parsed["plan"]["kind"] == "reindex"
    assert parsed["devtools"].startswith("# toolkit migrate: images images-000001 -> images-000002")


def test_migrate_switches_then_rollback_and_cleanup(escluster: Any, tmp_path: Path) -> None:
    _setup(escluster.url, tmp_path)
    code, out = migrate(escluster.url, "--index-options", "int4_hnsw", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert report["switched"] and report["counts"] == {"old": 4, "new": 4} and report["plan"]["to"] == "images-000002"
    assert _alias(escluster.url) == ["images-000002"]
    result = runner.invoke(app, ["migrate", "--es-url", escluster.url, "--rollback"])
    assert result.exit_code == 0, result.output
    assert "images now points at images-000001" in result.output
    assert _alias(escluster.url) == ["images-000001"]
    # Cleanup after a rollback deletes nothing newer than the live index.
    result = runner.invoke(app, ["migrate", "--es-url", escluster.url, "--cleanup"])
    assert result.exit_code == 4, result.output
    assert "no index older than images-000001" in result.output
    assert requests.head(f"{escluster.url}/images-000002").status_code == 200


def test_nothing_to_migrate_and_flags_one_at_a_time(escluster: Any, tmp_path: Path) -> None:
    _setup(escluster.url, tmp_path)
    code, out = migrate(escluster.url)
    assert code == 0, out
    assert "nothing to migrate: images-000001 already matches the settings" in out
    result = runner.invoke(app, ["migrate", "--es-url", escluster.url, "--rollback", "--cleanup"])
    assert result.exit_code == 4 and "one at a time" in result.output


def test_no_alias_names_setup(escluster: Any) -> None:
    result = runner.invoke(app, ["migrate", "--es-url", escluster.url, "--dry-run"])
    assert result.exit_code == 17, result.output
    assert "alias 'images' does not exist" in result.output and "toolkit setup" in result.output


class OtherModel(CountingEmbedder):
    model_name = "fake-clip-b"


def test_an_image_that_cannot_be_read_again_exits_30_and_keeps_the_alias(escluster: Any, tmp_path: Path,
                                                                        monkeypatch: Any) -> None:
    # The configured model is loaded by toolkit.ingest.load_embedder: a fake one here (a real model
    # load costs half a minute on these machines; the library tests cover the engine with fakes too).
    import toolkit.ingest

    monkeypatch.setattr(toolkit.ingest, "load_embedder", lambda settings: OtherModel())
    _setup(escluster.url, tmp_path, n=3)
    (tmp_path / "imgs" / "img001.jpg").unlink()
    result = runner.invoke(app, ["migrate", "--es-url", escluster.url, "--image-model", "fake-clip-b",
                                 "--image-dims", str(DIMS), "--failures-dir", str(tmp_path), "--json"])
    assert result.exit_code == 30, result.output
    report = json.loads(result.output[:result.output.rindex("}") + 1])
    assert report["reembed_failed"] == 1 and report["switched"] is False and report["reembedded"] >= 2
    assert "could not be re-embedded" in result.output and "still points at images-000001" in result.output
    assert _alias(escluster.url) == ["images-000001"]
    assert report["failures_files"] and all(Path(f).parent == tmp_path for f in report["failures_files"])
    # The image is back: the same command resumes, shows its progress and switches.
    good_images(tmp_path / "again", 2)[1].rename(tmp_path / "imgs" / "img001.jpg")
    result = runner.invoke(app, ["migrate", "--es-url", escluster.url, "--image-model", "fake-clip-b",
                                 "--image-dims", str(DIMS), "--failures-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "(resuming)" in result.output and "re-embedded" in result.output
    assert "images now points at images-000002" in result.output
    assert _alias(escluster.url) == ["images-000002"]
