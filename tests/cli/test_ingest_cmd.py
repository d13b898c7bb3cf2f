"""``toolkit ingest`` on the command line, with the tiny CLIP model and the test cluster."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.cli.ingest_cli_helpers import tiny_clip_config
from tests.lib.ingest_helpers import count_docs, good_images, make_settings
from toolkit.cli import app
from toolkit.cluster import make_client
from toolkit.errors import ItemsFailed, NotFound, ValidationError

runner = CliRunner()


@pytest.fixture
def config(escluster: Any, tmp_path: Path) -> Path:
    """A config file: the tiny CLIP model, 64 dims, fast retries; the index set up."""
    return tiny_clip_config(escluster.url, tmp_path, "ingest:\n  initial_backoff: 0.01\n")


def test_ingest_json_summary_and_retry_failures(config: Path, tmp_path: Path, escluster: Any,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the default failures file goes to the working directory
    folder = tmp_path / "imgs"
    good_images(folder, 3)
    (folder / "broken.jpg").write_bytes(b"GIF89a but not really")
    result = runner.invoke(app, ["ingest", str(folder), "--json", "--config", str(config)])
    assert result.exit_code == ItemsFailed.exit_code, result.output  # a failed item fails the command
    assert "--retry-failures" in result.stderr
    summary = json.loads(result.stdout)
    assert {k: summary[k] for k in ("seen", "indexed", "skipped", "failed")} == \
        {"seen": 4, "indexed": 3, "skipped": 0, "failed": 1}
    assert {"failures_file", "seconds", "images_per_second"} <= set(summary)
    failures = Path(summary["failures_file"])
    assert failures.parent == tmp_path and failures.name.startswith("toolkit-failures-")
    assert json.loads(failures.read_text())["location"] == str(folder / "broken.jpg")

    (folder / "broken.jpg").write_bytes((folder / "img000.jpg").read_bytes()[:-2] + b"\xff\xd9")
    retry = runner.invoke(app, ["ingest", "--retry-failures", str(failures), "--json",
                                "--config", str(config)])
    assert retry.exit_code == 0, retry.output
    assert json.loads(retry.stdout)["seen"] == 1

    again = runner.invoke(app, ["ingest", str(folder), "--resume", "--json", "--config", str(config)])
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["skipped"] >= 3  # already indexed: nothing embedded again
    settings = make_settings(escluster.url)
    assert count_docs(make_client(settings), settings) >= 3


def test_missing_index_says_run_setup(escluster: Any, tmp_path: Path) -> None:
    good_images(tmp_path / "imgs", 1)
    result = runner.invoke(app, ["ingest", str(tmp_path / "imgs"), "--es-url", escluster.url,
                                 "--index", "nothing-here"])
    assert result.exit_code == NotFound.exit_code, result.output
    assert "toolkit setup" in result.output


def test_source_and_retry_failures_are_exclusive(tmp_path: Path) -> None:
    failures = tmp_path / "f.jsonl"
    failures.write_text("")
    result = runner.invoke(app, ["ingest", str(tmp_path), "--retry-failures", str(failures)])
    assert result.exit_code == ValidationError.exit_code, result.output
    assert "--retry-failures" in result.output


def test_retry_failures_refuses_to_write_the_file_it_reads(tmp_path: Path) -> None:
    # Writing failures into the file being retried truncated it at the first failure: records lost.
    failures = tmp_path / "f.jsonl"
    record = {"location": str(tmp_path / "gone.jpg"), "stage": "read", "reason": "missing"}
    failures.write_text(json.dumps(record) + "\n")
    result = runner.invoke(app, ["ingest", "--retry-failures", str(failures), "--failures-file",
                                 str(tmp_path / "." / "f.jsonl")])
    assert result.exit_code == ValidationError.exit_code, result.output
    assert "--failures-file" in result.output
    assert json.loads(failures.read_text()) == record


def test_column_flags_on_a_source_that_is_not_a_manifest_are_refused(tmp_path: Path) -> None:
    # They were silently ignored: ids and labels the user asked for never reached the documents.
    good_images(tmp_path / "imgs", 1)
    result = runner.invoke(app, ["ingest", str(tmp_path / "imgs"), "--label-column", "label"])
    assert result.exit_code == ValidationError.exit_code, result.output
    assert "--label-column" in result.output and "manifest" in result.output


def test_summary_lists_skipped_examples_under_their_own_reason(config: Path, tmp_path: Path) -> None:
    # The examples of every reason used to follow the last reason's line, "already indexed" ones under
    # "duplicate id in the source".
    good_images(tmp_path / "imgs", 2)
    manifest = tmp_path / "m.csv"
    manifest.write_text("id,path\nA,imgs/img000.jpg\nB,imgs/img001.jpg\nA,imgs/img001.jpg\n")
    first = runner.invoke(app, ["ingest", str(manifest), "--config", str(config)])
    assert first.exit_code == 0, first.output
    again = runner.invoke(app, ["ingest", str(manifest), "--resume", "--config", str(config)])
    assert again.exit_code == 0, again.output
    lines = [line.strip() for line in again.stderr.splitlines()]
    already = lines.index("skipped 2: already indexed")
    duplicate = lines.index("skipped 1: duplicate id in the source")
    assert lines[already + 1:already + 3] == ["m.csv:2: already indexed (--resume)",
                                              "m.csv:3: already indexed (--resume)"]
    assert lines[duplicate + 1].startswith("m.csv:4: duplicate id in the source")


def test_a_file_name_with_a_newline_or_escape_stays_on_one_summary_line(config: Path, tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A name holding a newline would fake a line of output; an escape would drive the terminal."""
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "imgs"
    good_images(folder, 1)
    (folder / "evil\nfailed 0 at nothing\x1b[2J.jpg").write_bytes(b"not an image at all")
    result = runner.invoke(app, ["ingest", str(folder), "--config", str(config)])
    assert result.exit_code == ItemsFailed.exit_code, result.output
    lines = result.stderr.splitlines()
    assert not any(line.startswith("failed 0 at nothing") for line in lines)
    assert "\x1b" not in result.stderr
    (shown,) = [line for line in lines if "evil" in line]
    assert "evil\\nfailed 0 at nothing\\x1b[2J.jpg" in shown
