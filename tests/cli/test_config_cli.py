"""`toolkit config show`: effective settings, their sources, secrets masked."""

from __future__ import annotations

import json
import pathlib

from typer.testing import CliRunner

from toolkit.cli import app

runner = CliRunner()


def test_show_lists_values_and_sources_with_secrets_masked(monkeypatch) -> None:
    pathlib.Path("toolkit.yaml").write_text("index:\n  alias: photos\nelasticsearch:\n  username: elastic\n")
    monkeypatch.setenv("ES_PASSWORD", "hunter2-secret")
    monkeypatch.setenv("ES_API_KEY", "abc-secret-key")
    result = runner.invoke(app, ["config", "show", "--json", "--es-url", "http://flag:9200"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["index.alias"]["value"] == "photos"
    assert data["index.alias"]["source"].startswith("file:") and data["index.alias"]["source"].endswith(":2")
    assert data["elasticsearch.url"] == {"value": "http://flag:9200", "source": "flag"}
    assert data["elasticsearch.password"] == {"value": "********", "source": "env:ES_PASSWORD"}
    assert data["index.shards"] == {"value": 1, "source": "default"}
    assert "hunter2-secret" not in result.output and "abc-secret-key" not in result.output


def test_table_output_masks_secrets_too(monkeypatch) -> None:
    monkeypatch.setenv("ES_API_KEY", "abc-secret-key")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 0, result.output
    assert "elasticsearch.api_key" in result.output and "********" in result.output
    assert "abc-secret-key" not in result.output


def test_bad_config_file_exits_with_the_key_and_line() -> None:
    pathlib.Path("toolkit.yaml").write_text("index:\n  alias: photos\n  replicaz: 1\n")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 3
    assert "toolkit.yaml:3" in result.output and "index.replicaz" in result.output
    assert "Traceback" not in result.output

