"""toolkit smoke on the command line: verdict line, --json, --junit-xml, --keep, exit codes.

Shares the deployed test cluster of ``tests/lib/test_smoke.py`` (the model is traced once).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from typer.testing import CliRunner

from tests.lib.test_smoke import leftovers, shared_env, smoke_config, write_config
from toolkit import smoke
from toolkit.cli import app
from toolkit.errors import CheckFailed

runner = CliRunner()


@pytest.fixture(scope="module")
def env():
    return shared_env()


@pytest.fixture
def configured(env, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_config(tmp_path, smoke_config(env.url))
    return tmp_path


def test_pass_prints_one_verdict_line_and_a_junit_report(env, configured):
    result = runner.invoke(app, ["smoke", "--junit-xml", "reports/ci/smoke.xml"])  # the folder is made
    assert result.exit_code == 0, result.output
    assert result.stdout.count("\n") == 1 and result.stdout.startswith("smoke: PASS 10/10 checks in ")
    assert "pass text_query" in result.stderr and "pass cleanup" in result.stderr
    root = ET.parse(configured / "reports" / "ci" / "smoke.xml").getroot()
    assert root.tag == "testsuite" and root.get("tests") == "10" and root.get("failures") == "0"
    assert [c.get("name") for c in root.iter("testcase")][-1] == "cleanup"
    assert all(c.find("failure") is None for c in root.iter("testcase"))


def test_model_stopped_exits_30_with_json_and_junit_failures(env, configured):
    from toolkit.textmodel import start, start_options, stop

    client = env.client
    stop(client, "tiny-text-64", force=True)
    try:
        result = runner.invoke(app, ["smoke", "--json", "--junit-xml", "smoke.xml"])
    finally:
        start(client, "tiny-text-64", start_options(env.settings))
    assert result.exit_code == CheckFailed.exit_code == 30, result.output
    data = json.loads(result.stdout)
    assert set(data) == {"passed", "checks", "seconds"} and data["passed"] is False
    assert all(set(c) == {"name", "passed", "message", "seconds"} for c in data["checks"])
    first = next(c for c in data["checks"] if not c["passed"])
    assert first["name"] == "model_started" and "not started" in first["message"]
    assert "smoke checks failed, first model_started" in result.stderr and "deploy-model" in result.stderr
    failures = {c.get("name"): c.find("failure") for c in ET.parse(configured / "smoke.xml").getroot().iter("testcase")}
    assert failures["model_started"] is not None and "not started" in failures["model_started"].get("message")
    assert failures["reachable"] is None and failures["cleanup"] is None


def test_keep_leaves_the_temporary_index(env, configured):
    result = runner.invoke(app, ["smoke", "--keep", "--json"])
    assert result.exit_code == 0, result.output
    cleanup = json.loads(result.stdout)["checks"][-1]
    assert cleanup["name"] == "cleanup" and cleanup["message"].startswith("kept toolkit-smoke-")
    name = cleanup["message"].split()[1].removesuffix("-000001")
    client = env.client
    assert len(leftovers(client, name)) == 5
    for target in (f"{name}-000001", f"_index_template/{name}", f"_component_template/{name}-mappings",
                   f"_component_template/{name}-settings", f"_ingest/pipeline/{name}"):
        smoke._delete(client, target)


def test_unreachable_cluster_fails_without_leaking_the_password(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ES_USERNAME", "elastic")
    monkeypatch.setenv("ES_PASSWORD", "s3cret-pass")
    result = runner.invoke(app, ["smoke", "--es-url", "http://elastic:s3cret-pass@127.0.0.1:9", "--junit-xml",
                                 "smoke.xml", "--no-semantic"])
    assert result.exit_code == 30, result.output
    assert result.stdout.startswith("smoke: FAIL reachable: ")
    report = (tmp_path / "smoke.xml").read_text()
    assert "s3cret-pass" not in result.output and "s3cret-pass" not in report
    assert ET.fromstring(report).get("failures") == ET.fromstring(report).get("tests")


def test_an_unwritable_junit_xml_fails_before_the_checks(env, configured):
    (configured / "afile").write_text("x")
    result = runner.invoke(app, ["smoke", "--junit-xml", "afile/smoke.xml"])
    assert result.exit_code == 4, result.output
    assert "cannot write the JUnit report" in result.stderr and "--junit-xml" in result.stderr
    assert "reachable" not in result.stderr  # nothing was run
