"""Ingest of hostile local sources against the test cluster: bad rows, folders and files fail alone at
stage ``source`` (or ``decode``), the run goes on, and every item is accounted for."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from PIL import Image

from tests.lib.ingest_helpers import CountingEmbedder, count_docs, good_images, make_settings, setup_index
from toolkit.cluster import make_client
from toolkit.images import sources
from toolkit.images.sources import open_source
from toolkit.ingest import ingest


def _run(escluster: Any, tmp_path: Path, source: Any) -> tuple[Any, list[dict[str, Any]], Any]:
    settings = make_settings(escluster.url)
    client = make_client(settings)
    setup_index(client, settings)
    failures = tmp_path / "failures.jsonl"
    report = ingest(client, settings, source=source, embedder=CountingEmbedder(), failures_file=failures)
    assert report.seen == report.indexed + report.skipped + report.failed
    records = [json.loads(line) for line in failures.read_text().splitlines()] if failures.exists() else []
    return report, records, (client, settings)


def test_a_folder_with_special_files_a_locked_subfolder_and_a_strip_ingests_the_rest(
        escluster: Any, tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "photos"
    good_images(folder / "a", 3)
    good_images(folder / "locked", 2, prefix="hidden")
    (folder / "z").mkdir()
    for i in range(2):  # after the locked folder in walk order: the walk went on past it
        Image.new("RGB", (90, 70), (200, 10 * i, 90)).save(folder / "z" / f"last{i}.png")
    os.mkfifo(folder / "fifo.jpg")
    (folder / "zero.jpg").symlink_to("/dev/zero")
    Image.new("RGB", (20000, 1)).save(folder / "strip.png")
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:  # as chmod 000 would, for root too
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(sources.os, "scandir", scandir)
    report, records, (client, settings) = _run(escluster, tmp_path, open_source(folder))
    assert (report.indexed, report.failed) == (5, 4)
    assert report.complete and report.error is None
    by_stage = {(r["stage"], Path(r["location"]).name) for r in records}
    assert by_stage == {("source", "locked"), ("source", "fifo.jpg"), ("source", "zero.jpg"), ("decode", "strip.png")}
    locked = next(r for r in records if r["location"].endswith("locked"))
    assert "Permission denied" in locked["reason"] and "chmod" in locked["reason"]
    assert count_docs(client, settings) == 5


def test_a_manifest_with_a_latin1_row_and_an_oversize_caption_goes_on(escluster: Any, tmp_path: Path) -> None:
    # A Latin-1 byte in row 2501 aborted the run (exit 4, rows lost); a caption over 128 KiB was a
    # `_csv.Error` traceback.
    images = good_images(tmp_path / "imgs", 3)
    rows = [f"{i},{images[i % 3].name},caption {i}".encode() for i in range(1, 3001)]
    rows[2499] = f"2500,{images[0].name},caf".encode() + b"\xe9"
    rows[9] = f"10,{images[1].name},{'long ' * 40_000}".encode()
    manifest = tmp_path / "imgs" / "m.csv"
    manifest.write_bytes(b"id,path,caption\n" + b"\n".join(rows) + b"\n")
    report, records, _ = _run(escluster, tmp_path, open_source(manifest))
    assert (report.seen, report.indexed, report.failed) == (3000, 2999, 1)
    (record,) = records
    assert record["stage"] == "source" and record["position"] == "m.csv:2501"
    assert "line 2501: byte 0xE9" in record["reason"] and "UTF-8" in record["reason"]
