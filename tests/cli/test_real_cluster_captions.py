"""On a real Elasticsearch: captioned documents index with the inference processor's real output,
and undeploy while the caption pipeline references the model is refused (409) with the pipeline named.

These are the paths where the test cluster could be wrong (what the `inference` processor writes,
the 409 of a referenced model), so they run against real Elasticsearch in the GitHub workflow
(``pytest -m real_cluster`` with ES_URL set). They use their own index alias and the default models.
"""

from __future__ import annotations

import json
import os

import pytest
from typer.testing import CliRunner

from toolkit.cli import app
from toolkit.cluster import make_client
from toolkit.devtools import Request, send
from toolkit.errors import RequestFailed
from toolkit.settings import load_settings

pytestmark = [pytest.mark.real_cluster,
              pytest.mark.skipif(not os.environ.get("ES_URL"), reason="needs a real Elasticsearch at ES_URL")]
runner = CliRunner()
ALIAS = "toolkit-test-captions"
LONG_CAPTION = " ".join(["a small grey cat sleeping on a warm windowsill in the afternoon sun"] * 20)


def cli(tmp_path, *args: str):
    config = tmp_path / "toolkit.yaml"
    config.write_text(f"index:\n  alias: {ALIAS}\n  pipeline: {ALIAS}-pipeline\n  template_name: {ALIAS}\n",
                      encoding="utf-8")
    return runner.invoke(app, [*args, "--config", str(config)])


@pytest.fixture
def installed(tmp_path):
    result = cli(tmp_path, "deploy-model", "--timeout", "900")
    assert result.exit_code == 0, result.output
    result = cli(tmp_path, "setup")
    assert result.exit_code == 0, result.output
    client = make_client(load_settings())
    yield client
    send(client, Request("DELETE", f"{ALIAS}-*", params={"ignore_unavailable": "true"}))
    for req in (Request("DELETE", f"_index_template/{ALIAS}"),
                Request("DELETE", f"_component_template/{ALIAS}-mappings"),
                Request("DELETE", f"_component_template/{ALIAS}-settings"),
                Request("DELETE", f"_ingest/pipeline/{ALIAS}-pipeline")):
        try:
            send(client, req)
        except Exception:  # noqa: BLE001 - best-effort cleanup
            pass
    cli(tmp_path, "deploy-model")  # leave the default model started for the workflow's smoke step


def test_captioned_manifest_indexes_every_row_with_only_mapped_fields(installed, tmp_path):
    from importlib import resources

    manifest = tmp_path / "m.csv"
    rows = ["id,path,caption"]
    base = resources.files("toolkit") / "data" / "photos"
    names = sorted(p.name for p in base.iterdir() if p.name.endswith(".jpg"))[:3]
    captions = ["a cat", "eine rote Katze", LONG_CAPTION]
    for i, (name, caption) in enumerate(zip(names, captions, strict=True)):
        rows.append(f'r{i},{base / name},"{caption}"')
    manifest.write_text("\n".join(rows) + "\n", encoding="utf-8")
    result = cli(tmp_path, "ingest", str(manifest), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["indexed"] == 3 and report["failed"] == 0, report
    send(installed, Request("POST", f"{ALIAS}/_refresh"))
    hits = send(installed, Request("POST", f"{ALIAS}/_search", body={
        "size": 10, "_source": {"exclude_vectors": False}}))["hits"]["hits"]
    docs = {h["_id"]: h["_source"] for h in hits}
    assert set(docs) == {"r0", "r1", "r2"}
    assert all(len(d["caption_embedding"]) == 512 and d["caption_model"] for d in docs.values())
    assert docs["r2"].get("caption_truncated") is True and "caption_truncated" not in docs["r0"]
    (mapping,) = send(installed, Request("GET", f"{ALIAS}/_mapping")).values()
    assert all(set(d) <= set(mapping["mappings"]["properties"]) for d in docs.values())


def test_undeploy_while_the_caption_pipeline_references_the_model(installed, tmp_path):
    result = cli(tmp_path, "undeploy")
    assert result.exit_code == RequestFailed.exit_code, result.output
    assert f"'{ALIAS}-pipeline'" in result.output and "--force" in result.output
    result = cli(tmp_path, "undeploy", "--force", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stopped"] is True
