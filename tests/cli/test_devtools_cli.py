"""``toolkit devtools``: a pasteable Kibana console script of setup, deploy and every query kind."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.settings import ENV_VARS


@pytest.fixture(autouse=True)
def isolated(monkeypatch, tmp_path):
    for var in [*ENV_VARS, "TOOLKIT_CONFIG"]:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)


def requests_in(script: str) -> list[tuple[str, object]]:
    out = []
    for block in script.strip().split("\n\n"):
        lines = [line for line in block.splitlines() if not line.startswith("#")]
        if lines:
            out.append((lines[0], json.loads("\n".join(lines[1:])) if len(lines) > 1 else None))
    return out


def test_devtools_prints_every_request_without_a_cluster():
    result = CliRunner().invoke(app, ["devtools", "--text", "ein Hund", "--index", "photos", "-k", "4",
                                      "--like", "img-1"])
    assert result.exit_code == 0, result.output
    requests = requests_in(result.stdout)            # every body parses: pasteable
    lines = [line for line, _ in requests]
    assert "PUT _index_template/toolkit-images" in lines and "PUT photos-000001" in lines
    assert any(ln.startswith("POST _ml/trained_models/") and "/deployment/_start?" in ln for ln in lines)
    assert "/definition/0..N" in result.stdout       # the uploads are comments, not requests
    searches = [body for line, body in requests if line == "POST photos/_search"]
    assert searches[0]["knn"]["query_vector_builder"]["text_embedding"]["model_text"] == "ein Hund"
    assert searches[0]["size"] == 4
    assert any(b.get("query") == {"ids": {"values": ["img-1"]}} for b in searches)
    assert any("retriever" in b for b in searches)


def test_a_line_break_in_the_text_or_id_stays_inside_the_comment():
    result = CliRunner().invoke(app, ["devtools", "--text", "a dog\nDELETE images", "--like", "x\nDELETE y"])
    assert result.exit_code == 0, result.output
    lines = [line for line, _ in requests_in(result.stdout)]
    assert not [ln for ln in result.stdout.splitlines() if ln.startswith("DELETE")], lines
    assert "# toolkit search \"a dog DELETE images\"" in result.stdout
