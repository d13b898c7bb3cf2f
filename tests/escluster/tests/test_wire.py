"""Wire protocol of the test cluster: headers, media types, errors, auth, routing, the process entry point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from elasticsearch import AuthenticationException, Elasticsearch

from tests.escluster.server import apply_filter_path
from tests.escluster.testing import call

VND = "application/vnd.elasticsearch+json; compatible-with=9"
REPO = Path(__file__).resolve().parents[3]


def test_root_info_shape(escluster):
    r = call(escluster.url, "GET", "/")
    assert r.status == 200
    assert r.headers["x-elastic-product"] == "Elasticsearch"
    assert r.body["version"]["number"] == "9.2.0"
    assert r.body["version"]["build_flavor"] == "default"
    assert r.body["tagline"] == "You Know, for Search"
    assert {"name", "cluster_name", "cluster_uuid"} <= set(r.body)
    assert {"lucene_version", "minimum_wire_compatibility_version"} <= set(r.body["version"])


def test_official_client_info_and_version_option(escluster_factory):
    es = escluster_factory(version="9.1.3")
    assert Elasticsearch(es.url).info()["version"]["number"] == "9.1.3"


def test_error_responses_carry_product_header_and_es_shape(escluster):
    r = call(escluster.url, "GET", "/missing/_doc/1")
    assert r.status == 404
    assert r.headers["x-elastic-product"] == "Elasticsearch"
    assert r.body["status"] == 404
    assert r.body["error"]["type"] == "index_not_found_exception"
    assert r.body["error"]["root_cause"][0]["type"] == "index_not_found_exception"
    assert r.body["error"]["reason"] == "no such index [missing]"


def test_vendor_media_type_is_echoed(escluster):
    r = call(escluster.url, "GET", "/", headers={"Accept": VND})
    assert r.headers["content-type"] == "application/vnd.elasticsearch+json;compatible-with=9"
    plain = call(escluster.url, "GET", "/", headers={"Accept": "application/json"})
    assert plain.headers["content-type"].startswith("application/json")


def test_incompatible_version_media_type_is_rejected(escluster):
    r = call(
        escluster.url, "GET", "/", headers={"Accept": "application/vnd.elasticsearch+json; compatible-with=7"}
    )
    assert r.status == 400
    assert r.body["error"]["type"] == "media_type_header_exception"


def test_unsupported_content_type_is_406(escluster):
    r = call(escluster.url, "PUT", "/idx", "{}", headers={"Content-Type": "text/plain"})
    assert r.status == 406
    assert r.body == {"error": "Content-Type header [text/plain] is not supported", "status": 406}


def test_head_has_no_body(escluster):
    call(escluster.url, "PUT", "/idx")
    r = call(escluster.url, "HEAD", "/idx")
    assert (r.status, r.raw) == (200, b"")
    assert call(escluster.url, "HEAD", "/nope").status == 404


def test_unknown_route_is_400_no_handler(escluster):
    r = call(escluster.url, "GET", "/_nothing/here/at/all")
    assert r.status == 400
    assert r.body["error"]["type"] == "illegal_argument_exception"
    assert r.body["error"]["reason"] == "no handler found for uri [/_nothing/here/at/all] and method [GET]"


def test_wrong_method_is_405_with_allowed_methods(escluster):
    r = call(escluster.url, "GET", "/_bulk")
    assert r.status == 405
    assert r.body["error"] == "Incorrect HTTP method for uri [/_bulk] and method [GET], allowed: [POST, PUT]"


def test_malformed_json_is_x_content_parse_exception(escluster):
    r = call(escluster.url, "PUT", "/idx", "{not json")
    assert r.status == 400
    assert r.body["error"]["type"] == "x_content_parse_exception"


def test_pretty_and_filter_path(escluster):
    r = call(escluster.url, "GET", "/?pretty&filter_path=version.number,tagline")
    assert r.body == {"version": {"number": "9.2.0"}, "tagline": "You Know, for Search"}
    assert b"\n  " in r.raw


@pytest.mark.parametrize(
    ("body", "path", "expected"),
    [
        ({"a": {"b": 1, "c": 2}}, "a.b", {"a": {"b": 1}}),
        (
            {"items": [{"index": {"_id": "1", "status": 201}}]},
            "items.*._id",
            {"items": [{"index": {"_id": "1"}}]},
        ),
        ({"a": {"x": {"y": 1}}, "b": 2}, "**.y", {"a": {"x": {"y": 1}}}),
        ({"a": 1, "b": 2}, "-b", {"a": 1}),
        ({"a": 1}, "zzz", {}),
    ],
)
def test_filter_path_rules(body, path, expected):
    assert apply_filter_path(body, path) == expected


def test_api_key_required_when_configured(escluster_factory):
    es = escluster_factory(api_key="s3cret")
    missing = call(es.url, "GET", "/")
    assert missing.status == 401
    assert missing.body["error"]["type"] == "security_exception"
    assert missing.headers["x-elastic-product"] == "Elasticsearch"
    wrong = call(es.url, "GET", "/", headers={"Authorization": "ApiKey nope"})
    assert wrong.status == 401
    assert call(es.url, "GET", "/", headers={"Authorization": "ApiKey s3cret"}).status == 200
    assert Elasticsearch(es.url, api_key="s3cret").info()["tagline"] == "You Know, for Search"
    with pytest.raises(AuthenticationException):
        Elasticsearch(es.url, api_key="bad").info()


def test_basic_auth_password_option(escluster_factory):
    es = escluster_factory(password="pw")
    assert call(es.url, "GET", "/").status == 401
    assert Elasticsearch(es.url, basic_auth=("elastic", "pw")).info()["tagline"]


def test_no_security_by_default(escluster):
    assert call(escluster.url, "GET", "/", headers={"Authorization": "ApiKey whatever"}).status == 200


def test_license_get_and_start_trial(escluster_factory):
    es = escluster_factory(license="basic")
    client = Elasticsearch(es.url)
    assert client.license.get()["license"]["type"] == "basic"
    not_acked = call(es.url, "POST", "/_license/start_trial")
    assert not_acked.status == 200
    assert not_acked.body["acknowledged"] is False and not_acked.body["trial_was_started"] is False
    started = call(es.url, "POST", "/_license/start_trial?acknowledge=true")
    assert started.body == {"acknowledged": True, "trial_was_started": True, "type": "trial"}
    lic = client.license.get()["license"]
    assert lic["type"] == "trial" and lic["status"] == "active" and "expiry_date_in_millis" in lic
    again = call(es.url, "POST", "/_license/start_trial?acknowledge=true")
    assert again.status == 403 and again.body["trial_was_started"] is False


def test_nodes_report_ml_role_and_memory(escluster_factory):
    es = escluster_factory(ml_nodes=2, ml_memory_bytes=8 * 1024**3)
    nodes = Elasticsearch(es.url).nodes.info()["nodes"]
    ml = [n for n in nodes.values() if "ml" in n["roles"]]
    assert len(ml) == 2
    assert all(n["attributes"]["ml.machine_memory"] == str(8 * 1024**3) for n in ml)
    assert all(
        "ml.max_jvm_size" in n["attributes"] and "ml.allocated_processors" in n["attributes"] for n in ml
    )
    none = escluster_factory(ml_nodes=0)
    assert not any("ml" in n["roles"] for n in Elasticsearch(none.url).nodes.info()["nodes"].values())


def test_runtime_config_changes_license_and_ml_nodes(escluster):
    r = call(escluster.url, "POST", "/_test/config", {"ml_nodes": 0, "license": "basic"})
    assert r.status == 200
    assert call(escluster.url, "GET", "/_license").body["license"]["type"] == "basic"
    nodes = call(escluster.url, "GET", "/_nodes").body["nodes"]
    assert not any("ml" in n["roles"] for n in nodes.values())
    assert call(escluster.url, "POST", "/_test/config", {"bogus": 1}).status == 400


def test_cluster_health_single_node_yellow_and_wait(escluster):
    assert call(escluster.url, "GET", "/_cluster/health").body["status"] == "green"
    call(escluster.url, "PUT", "/idx")
    health = call(escluster.url, "GET", "/_cluster/health?wait_for_status=yellow&timeout=1s")
    assert health.status == 200 and health.body["status"] == "yellow"
    timed_out = call(escluster.url, "GET", "/_cluster/health?wait_for_status=green&timeout=100ms")
    assert timed_out.status == 408 and timed_out.body["timed_out"] is True
    call(escluster.url, "PUT", "/idx/_settings", {"index": {"number_of_replicas": 0}})
    assert call(escluster.url, "GET", "/_cluster/health?wait_for_status=green").body["status"] == "green"


def test_module_entry_point_prints_line_and_serves():
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.escluster",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--license",
            "basic",
            "--api-key",
            "k",
        ],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("listening on http://127.0.0.1:"), proc.stderr.read() if proc.poll() else line
        url = line.removeprefix("listening on ")
        assert call(url, "GET", "/").status == 401
        info = call(url, "GET", "/_license", headers={"Authorization": "ApiKey k"})
        assert info.body["license"]["type"] == "basic"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
