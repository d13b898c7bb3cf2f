"""Every foreign exception the cluster client can raise becomes one of our typed errors."""

from __future__ import annotations

import inspect

import elastic_transport
import elasticsearch
import pytest

from toolkit import errors


def _api_error(cls: type, status: int, err_type: str, reason: str) -> Exception:
    meta = elastic_transport.ApiResponseMeta(status=status, http_version="1.1", headers=elastic_transport.HttpHeaders(),
                                             duration=0.0, node=elastic_transport.NodeConfig("http", "x", 9200))
    body = {"error": {"root_cause": [{"type": err_type, "reason": reason}], "type": err_type, "reason": reason},
            "status": status}
    return cls(message=err_type, meta=meta, body=body)


def _foreign_exception_types() -> list[type[BaseException]]:
    found: list[type[BaseException]] = []
    for module in (elasticsearch, elastic_transport):
        for _, obj in inspect.getmembers(module, inspect.isclass):
            if issubclass(obj, Exception) and not issubclass(obj, Warning) and obj not in found:
                found.append(obj)
    return found


@pytest.mark.parametrize("exc_type", _foreign_exception_types(), ids=lambda t: f"{t.__module__}.{t.__name__}")
def test_every_foreign_exception_type_is_mapped_to_a_specific_error(exc_type: type[BaseException]) -> None:
    if issubclass(exc_type, elasticsearch.ApiError):
        exc = _api_error(exc_type, 500, "some_exception", "boom")
    elif issubclass(exc_type, elasticsearch.UnsupportedProductError | elastic_transport.ApiError):
        exc = exc_type("not es", meta=None, body=None)
    else:
        exc = exc_type("boom")
    mapped = errors.from_elasticsearch(exc, doing="testing")
    assert type(mapped) is not errors.ToolkitError, f"{exc_type} fell through to the generic error"
    assert mapped.message.startswith("testing: ")


@pytest.mark.parametrize(("status", "err_type", "reason", "expected"), [
    (401, "security_exception", "unable to authenticate", errors.AuthenticationFailed),
    (403, "security_exception", "current license is non-compliant for [ml]", errors.LicenseError),
    (403, "security_exception", "action [x] is unauthorized", errors.AuthorizationFailed),
    (404, "index_not_found_exception", "no such index [images]", errors.NotFound),
    (404, "resource_not_found_exception", "model [m] not found", errors.NotFound),
    (400, "media_type_header_exception", "Invalid media-type value", errors.UnsupportedVersion),
    (400, "illegal_argument_exception", "bad k", errors.RequestFailed),
    (429, "es_rejected_execution_exception", "queue full", errors.RequestFailed),
])
def test_api_errors_map_by_status_and_type(status: int, err_type: str, reason: str, expected: type) -> None:
    mapped = errors.from_elasticsearch(_api_error(elasticsearch.ApiError, status, err_type, reason))
    assert type(mapped) is expected
    assert reason in mapped.message


def test_license_error_hint_says_how_to_start_a_trial() -> None:
    mapped = errors.from_elasticsearch(_api_error(elasticsearch.ApiError, 403, "security_exception",
                                                  "current license is non-compliant for [ml]"))
    assert "start_trial" in (mapped.hint or "")


def test_mapped_context_chains_the_original_exception() -> None:
    original = elastic_transport.ConnectionError("refused")
    with pytest.raises(errors.ConnectionFailed) as info, errors.mapped("reading"):
        raise original
    assert info.value.__cause__ is original


def test_mapped_leaves_unrelated_exceptions_alone() -> None:
    with pytest.raises(ZeroDivisionError), errors.mapped("x"):
        raise ZeroDivisionError()


def test_every_error_class_has_its_own_exit_code() -> None:
    classes = [c for _, c in inspect.getmembers(errors, inspect.isclass)
               if issubclass(c, errors.ToolkitError) and c is not errors.ToolkitError]
    codes = [c.exit_code for c in classes]
    assert len(codes) == len(set(codes)), {c.__name__: c.exit_code for c in classes}
    assert all(code not in (0, 1) for code in codes)


def test_all_shards_failed_reports_the_shards_own_reason() -> None:
    meta = elastic_transport.ApiResponseMeta(status=400, http_version="1.1", headers=elastic_transport.HttpHeaders(),
                                             duration=0.0, node=elastic_transport.NodeConfig("http", "x", 9200))
    cause = "The query vector has a different number of dimensions [512] than the document vectors [64]."
    body = {"error": {"root_cause": [{"type": "illegal_argument_exception", "reason": cause}],
                      "type": "search_phase_execution_exception", "reason": "all shards failed"}, "status": 400}
    mapped = errors.from_elasticsearch(elasticsearch.BadRequestError(message="x", meta=meta, body=body))
    assert isinstance(mapped, errors.RequestFailed)
    assert mapped.reason == cause


def _response_error(cls: type, status: int, headers: dict[str, str], body: object) -> Exception:
    meta = elastic_transport.ApiResponseMeta(status=status, http_version="1.1",
                                             headers=elastic_transport.HttpHeaders(headers), duration=0.0,
                                             node=elastic_transport.NodeConfig("http", "web.example", 8080))
    return cls(message=str(body), meta=meta, body=body)


@pytest.mark.parametrize(("status", "ctype", "body", "shown"), [
    (404, "text/html", "<html><head><title>404 Not Found</title></head><body>nginx</body></html>", "404 Not Found"),
    (501, "text/html", "<!DOCTYPE HTML>\n<html>\n<body>\n<h1>Error response</h1>\n<p>Unsupported method</p>",
     "Error response"),
    (405, "text/plain", "Method Not Allowed\nmore", "Method Not Allowed"),
    (400, "application/json", {"error": "not es"}, "{'error': 'not es'}"),
])
def test_an_error_without_the_product_header_is_not_elasticsearch(status: int, ctype: str, body: object,
                                                                  shown: str) -> None:
    mapped = errors.from_elasticsearch(_response_error(elasticsearch.ApiError, status, {"content-type": ctype},
                                                       body), doing="reading cluster info")
    assert type(mapped) is errors.NotElasticsearch
    assert mapped.message.startswith("reading cluster info: the server at http://web.example:8080 is not "
                                     "Elasticsearch")
    assert f"HTTP {status}, {ctype}" in mapped.message and shown in mapped.message
    assert "<html" not in mapped.message.lower() and "ES_URL" in (mapped.hint or "")


def test_a_200_from_another_product_is_not_elasticsearch() -> None:
    exc = _response_error(elasticsearch.UnsupportedProductError, 200, {"content-type": "text/html"},
                          "<html><body>\x1b[2JKibana</body></html>")
    mapped = errors.from_elasticsearch(exc)
    assert type(mapped) is errors.NotElasticsearch and "Kibana" in mapped.message
    assert "\x1b" not in mapped.message


@pytest.mark.parametrize("status", [429, 502, 503, 504])
def test_proxy_statuses_without_the_header_stay_request_failures(status: int) -> None:
    exc = _response_error(elasticsearch.ApiError, status, {"content-type": "text/html"},
                          "<html>Bad gateway</html>\n" + "x" * 5000)
    mapped = errors.from_elasticsearch(exc)
    assert type(mapped) is not errors.NotElasticsearch
    assert len(mapped.message) < 300  # the first line of the page, not the page


def test_an_error_from_elasticsearch_keeps_its_type() -> None:
    exc = _response_error(elasticsearch.NotFoundError, 404, {"x-elastic-product": "Elasticsearch"},
                          {"error": {"type": "index_not_found_exception", "reason": "no such index [x]"}})
    assert type(errors.from_elasticsearch(exc)) is errors.NotFound


def _timeout(inner: Exception) -> Exception:
    exc = elastic_transport.ConnectionTimeout("Connection timed out during request", errors=())
    exc.__cause__ = inner
    return exc


def test_a_read_timeout_names_the_seconds_and_the_setting() -> None:
    import urllib3.exceptions

    inner = urllib3.exceptions.ReadTimeoutError(None, "/", "Read timed out. (read timeout=2.5)")
    mapped = errors.from_elasticsearch(_timeout(inner), doing="searching")
    assert type(mapped) is errors.RequestTimedOut
    assert "timed out" in mapped.message and "2.5 s" in mapped.message
    assert "elasticsearch.request_timeout" in (mapped.hint or "")
    assert "ES_URL" not in (mapped.hint or "")


def test_a_connect_timeout_still_says_cannot_reach() -> None:
    import urllib3.exceptions

    inner = urllib3.exceptions.ConnectTimeoutError(None, "Connection to h timed out. (connect timeout=2)")
    mapped = errors.from_elasticsearch(_timeout(inner))
    assert type(mapped) is errors.ConnectionFailed and "cannot reach" in mapped.message


def test_a_huge_reason_is_cut_in_the_message_but_kept_on_the_error() -> None:
    reason = "failed to parse field [caption] " + "x" * 200_000
    mapped = errors.from_elasticsearch(_api_error(elasticsearch.ApiError, 400, "mapper_parsing_exception", reason))
    assert isinstance(mapped, errors.RequestFailed)
    assert len(mapped.message) < 1200 and "(200032 characters)" in mapped.message
    assert mapped.reason == reason


def test_a_redirect_says_where_it_points() -> None:
    exc = _response_error(elasticsearch.ApiError, 301, {"content-type": "text/html",
                                                         "location": "https://u:S3cret@es.example:9243/"}, "")
    mapped = errors.from_elasticsearch(exc)
    assert type(mapped) is errors.NotElasticsearch
    assert "redirecting to https://u:********@es.example:9243/" in mapped.message
    assert "S3cret" not in mapped.message and "redirects" in (mapped.hint or "")


@pytest.mark.parametrize(("inner", "words"), [
    (OSError("[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)"), "use http://"),
    (ConnectionResetError(104, "Connection reset by peer"), "use https://"),
])
def test_scheme_mix_ups_get_the_fix_that_helps(inner: Exception, words: str) -> None:
    exc = elastic_transport.ConnectionError("Connection error caused by: ...", errors=(inner,))
    mapped = errors.from_elasticsearch(exc)
    assert type(mapped) is errors.ConnectionFailed and words in (mapped.hint or "")
