"""``toolkit ingest --precision/--strict``: the guard's fallback in the summary and --json, --strict's stop."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.cli.ingest_cli_helpers import tiny_clip_config
from tests.lib.ingest_helpers import good_images
from toolkit.cli import app
from toolkit.errors import ModelError, ParityError

runner = CliRunner()


@pytest.fixture
def config(escluster: Any, tmp_path: Path) -> Path:
    """The tiny CLIP model on CPU, 64 dims, a threshold no int8 run can meet; the index set up."""
    file = tiny_clip_config(escluster.url, tmp_path, "  min_cosine:\n    int8: 1.0\n")
    good_images(tmp_path / "imgs", 3)
    return file


def test_fallback_is_in_the_json_summary(config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["ingest", str(tmp_path / "imgs"), "--precision", "int8", "--json",
                                 "--config", str(config)])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["indexed"] == 3
    assert summary["precision"]["used"] == "fp32" and summary["precision"]["fell_back"] is True
    assert summary["precision"]["thresholds"] == {"int8": 1.0}
    assert summary["vector_encoding"] == "json"  # the test cluster plays 9.2


def test_fallback_is_in_the_text_summary(config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["ingest", str(tmp_path / "imgs"), "--precision", "int8",
                                 "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "precision fp32 (fell back from int8: int8 min cosine" in result.stderr
    assert "vectors sent as json" in result.stderr


def test_strict_stops_with_a_clear_error_and_non_zero_exit(config: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["ingest", str(tmp_path / "imgs"), "--precision", "int8", "--strict",
                                 "--config", str(config)])
    assert result.exit_code == ParityError.exit_code, result.output
    assert "precision int8 disagrees with fp32 on the first batch" in result.stderr
    assert "drop --strict" in result.stderr


def test_strict_without_a_reduced_precision_is_refused(config: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["ingest", str(tmp_path / "imgs"), "--strict", "--config", str(config)])
    assert result.exit_code == ModelError.exit_code, result.output
    assert "--strict applies to an explicit reduced precision" in result.stderr
