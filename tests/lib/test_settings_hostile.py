"""Hostile configuration: secrets with stray whitespace, URLs of every shape, YAML that fights back."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from toolkit.errors import ConfigError
from toolkit.settings import MASK, load_settings, mask_url, secret_forms


def load(env: dict[str, str] | None = None, tmp: Path | None = None, **kw):
    return load_settings(environ=env or {}, cwd=tmp or Path("/nonexistent-dir-for-tests"), **kw)


def error(env: dict[str, str] | None = None, tmp: Path | None = None, **kw) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(env, tmp, **kw)
    return info.value


# ------------------------------------------------------------------------------------------- secrets


@pytest.mark.parametrize("var,key", [("ES_API_KEY", "api_key"), ("ES_PASSWORD", "password")])
def test_secrets_lose_the_trailing_newline_of_cat_key_txt(var: str, key: str) -> None:
    s = load({var: "K3y-value-1\n", "ES_USERNAME": "elastic\r\n"})
    assert getattr(s.elasticsearch, key).get_secret_value() == "K3y-value-1"
    assert s.elasticsearch.username == "elastic"


def test_secrets_from_the_file_are_stripped_too(tmp_path: Path) -> None:
    (tmp_path / "toolkit.yaml").write_text("elasticsearch:\n  api_key: |\n    Zm9vOmJhcg==\n")
    assert load(tmp=tmp_path).elasticsearch.api_key.get_secret_value() == "Zm9vOmJhcg=="


@pytest.mark.parametrize("value", ["   ", "\n", "\t \n"])
def test_whitespace_only_variables_count_as_unset(value: str) -> None:
    s = load({"ES_API_KEY": value, "ES_URL": value, "ES_USERNAME": value, "ES_PASSWORD": value})
    assert s.elasticsearch.api_key is None and s.elasticsearch.password is None
    assert s.elasticsearch.url == "http://localhost:9200"


@pytest.mark.parametrize("key,words", [
    ("abc def", "space, line break"),
    ("abc\ndef", "space, line break"),
    ("ключ", "non-ASCII"),
    ("ApiKey Zm9vOmJhcg==", "give the key alone"),
    ('{"id":"i","api_key":"k","encoded":"Zm9vOmJhcg=="}', "'encoded' value alone"),
    ("A" * 5000, "5000 characters long"),
])
def test_an_api_key_that_cannot_be_one_is_refused_without_quoting_it(key: str, words: str) -> None:
    exc = error({"ES_API_KEY": key})
    assert "ES_API_KEY" in exc.message and words in exc.message
    assert key.split()[-1] not in exc.message + (exc.hint or "")
    assert exc.__cause__ is None  # pydantic's error quotes the input: not chained


def test_username_with_a_colon_is_refused() -> None:
    exc = error({"ES_USERNAME": "ela:stic", "ES_PASSWORD": "x"})
    assert "ES_USERNAME" in exc.message and "':'" in exc.message


def test_secret_forms_cover_the_header_encodings() -> None:
    forms = secret_forms(api_key="myid:mykey123")
    assert "mykey123" in forms and base64.b64encode(b"myid:mykey123").decode() in forms
    encoded = base64.b64encode(b"theid:thekey99").decode()
    forms = secret_forms(api_key=encoded)
    assert {encoded, "theid:thekey99", "thekey99"} <= set(forms)
    forms = secret_forms(username="elastic", password="pässwörd")
    assert base64.b64encode("elastic:pässwörd".encode()).decode() in forms
    forms = secret_forms(url="http://elastic:p%40ss-w0rd@host:9200")
    assert {"p%40ss-w0rd", "p@ss-w0rd"} <= set(forms)


# ----------------------------------------------------------------------------------------------- URLs


@pytest.mark.parametrize("url,masked", [
    ("elastic:PW-secret1@host:9200", f"elastic:{MASK}@host:9200"),
    ("http://elastic:PW-secret1@host:9200", f"http://elastic:{MASK}@host:9200"),
    ("https://elastic:PW/sec@ret1@host:9200/es", f"https://elastic:{MASK}@host:9200/es"),
    ("http://:PW-secret1@host:9200", f"http://:{MASK}@host:9200"),
    ("http://host:9200/a?b=c", "http://host:9200/a?b=c"),
])
def test_mask_url_masks_the_password_whatever_the_shape(url: str, masked: str) -> None:
    assert mask_url(url) == masked


@pytest.mark.parametrize("url,words", [
    ("elastic:PW-secret1@host:9200", "has no scheme"),
    ("localhost:9200", "has no scheme"),
    ("ftp://host:21", "only http:// or https://"),
    ("file:///etc/passwd", "only http:// or https://"),
    ("http://host", "has no port"),
    ("http://host:0", "1 to 65535"),
    ("http://host:99999", "1 to 65535"),
    ("http://host:port", "1 to 65535"),
    ("http://host:9200/?pretty", "query string"),
    ("http://host:9200#x", "fragment"),
    ("http://ho st:9200", "space"),
    ("http://host\u200b:9200", "invisible"),
    ("\ufeffhttp://host:9200", "invisible"),
    ("http://elastic:pa/ss-secret1@host:9200", "percent-encode"),
    ("http://:9200", "no host"),
])
def test_unusable_urls_are_refused_with_the_reason_and_the_password_masked(url: str, words: str) -> None:
    exc = error({"ES_URL": url, "ES_PASSWORD": "", "ES_API_KEY": ""})
    assert words in exc.message, exc.message
    assert "ES_URL" in exc.message and "http://localhost:9200" in (exc.hint or "")
    assert "secret1" not in exc.message + (exc.hint or "")
    assert exc.__cause__ is None


@pytest.mark.parametrize("url,expected", [
    ("HTTPS://Host", "https://Host"),
    ("http://[::1]:9200", "http://[::1]:9200"),
    ("http://host:9200/", "http://host:9200/"),
    ("https://host/es/prefix", "https://host/es/prefix"),
    ("  http://host:9200\n", "http://host:9200"),
])
def test_usable_urls_are_kept_with_the_scheme_lowercased(url: str, expected: str) -> None:
    assert load({"ES_URL": url}).elasticsearch.url == expected


def test_config_show_refuses_a_schemeless_url_without_printing_its_password() -> None:
    exc = error(overrides={"elasticsearch.url": "elastic:Hunter2-pw@h:9200"})
    assert "Hunter2-pw" not in exc.message and MASK in exc.message


# --------------------------------------------------------------------------------------- float settings


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", ".nan", ".inf"])
def test_non_finite_float_settings_are_refused(tmp_path: Path, value: str) -> None:
    (tmp_path / "toolkit.yaml").write_text(f"elasticsearch:\n  request_timeout: {value}\n")
    exc = error(tmp=tmp_path)
    assert "elasticsearch.request_timeout" in exc.message and "finite" in exc.message
    assert exc.line == 2


def test_non_finite_float_flag_is_refused() -> None:
    exc = error(overrides={"ingest.initial_backoff": float("nan")})
    assert "ingest.initial_backoff" in exc.message and "finite" in exc.message


# ------------------------------------------------------------------------------------------------ YAML


@pytest.mark.parametrize("text,key,lines", [
    ("index:\n  alias: a\nindex:\n  shards: 2\n", "index", (1, 3)),
    ("index:\n  alias: a\n  shards: 1\n  alias: b\n", "index.alias", (2, 4)),
    ("index:\n  index_options:\n    m: 16\n    m: 32\n", "index.index_options.m", (3, 4)),
])
def test_a_key_given_twice_names_the_key_and_both_lines(tmp_path: Path, text: str, key: str,
                                                       lines: tuple[int, int]) -> None:
    (tmp_path / "toolkit.yaml").write_text(text)
    exc = error(tmp=tmp_path)
    assert f"'{key}' is given twice (lines {lines[0]} and {lines[1]})" in exc.message
    assert exc.hint


def test_yaml_merge_keys_are_not_duplicates(tmp_path: Path) -> None:
    (tmp_path / "toolkit.yaml").write_text("base: &b\n  shards: 2\nindex:\n  <<: *b\n  alias: x\n")
    exc = error(tmp=tmp_path)  # 'base' is an unknown section, but not a duplicate
    assert "unknown key 'base'" in exc.message


def test_an_alias_bomb_is_refused_before_it_expands(tmp_path: Path) -> None:
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x","x"]']
    for i in range(1, 9):
        prev, cur = chr(ord("a") + i - 1), chr(ord("a") + i)
        lines.append(f"{cur}: &{cur} [{', '.join(['*' + prev] * 10)}]")
    lines.append("index:\n  alias: *i")
    (tmp_path / "toolkit.yaml").write_text("\n".join(lines) + "\n")
    exc = error(tmp=tmp_path)
    assert "holds more than" in exc.message


def test_a_huge_config_file_is_refused_unread(tmp_path: Path) -> None:
    (tmp_path / "toolkit.yaml").write_text("# x\n" * (3 * 1024 * 1024 // 4))
    exc = error(tmp=tmp_path)
    assert "a toolkit config is a few KB" in exc.message


@pytest.mark.parametrize("text,words", [
    ("- a\n- b\n", "not a list"),
    ("just a string\n", "not a str"),
])
def test_a_top_level_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str, words: str) -> None:
    (tmp_path / "toolkit.yaml").write_text(text)
    assert words in error(tmp=tmp_path).message


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("explicit", [True, False])
def test_a_fifo_config_file_is_refused_without_waiting_for_a_writer(tmp_path: Path, explicit: bool) -> None:
    fifo = tmp_path / "toolkit.yaml"
    os.mkfifo(fifo)
    exc = error(tmp=tmp_path, config_path=fifo if explicit else None)
    assert "FIFO" in exc.message


def test_a_directory_named_toolkit_yaml_is_not_skipped_silently(tmp_path: Path) -> None:
    (tmp_path / "toolkit.yaml").mkdir()
    assert "a directory" in error(tmp=tmp_path).message


def test_nesting_that_would_overflow_the_parser_is_a_config_error(tmp_path: Path) -> None:
    (tmp_path / "toolkit.yaml").write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    assert "nests deeper than" in error(tmp=tmp_path).message


def test_credentials_in_the_url_and_in_settings_are_refused_not_one_dropped() -> None:
    exc = error({"ES_URL": "http://elastic:Tw1ce-pw@h:9200", "ES_API_KEY": "Zm9vOmJhcg=="})
    assert "credentials are given twice" in exc.message and "env:ES_URL" in exc.message
    assert "Tw1ce-pw" not in exc.message
    exc = error({"ES_URL": "http://elastic:Tw1ce-pw@h:9200", "ES_USERNAME": "elastic", "ES_PASSWORD": "other"})
    assert "credentials are given twice" in exc.message
    # The same credentials twice are one login, not a conflict.
    assert load({"ES_URL": "http://elastic:Tw1ce-pw@h:9200", "ES_USERNAME": "elastic",
                 "ES_PASSWORD": "Tw1ce-pw"}).elasticsearch.username == "elastic"


@pytest.mark.parametrize("key,value", [("elasticsearch.request_timeout", 1e300),
                                       ("ingest.download_timeout", 1e12), ("ingest.max_backoff", 1e300)])
def test_durations_too_long_for_the_os_timer_are_refused(key: str, value: float) -> None:
    # 1e300 s reached the socket as "cannot reach the cluster (OverflowError: timestamp out of range)".
    exc = error(overrides={key: value})
    assert key in exc.message and "86400" in exc.message


def test_toolkit_config_with_a_trailing_newline_finds_the_file(tmp_path: Path) -> None:
    (tmp_path / "my.yaml").write_text("index:\n  alias: photos\n")
    assert load({"TOOLKIT_CONFIG": f"{tmp_path / 'my.yaml'}\n"}).index.alias == "photos"


def test_a_dotted_key_at_the_top_says_to_nest_it(tmp_path: Path) -> None:
    (tmp_path / "toolkit.yaml").write_text("index.index_options.m: 8\n")
    exc = error(tmp=tmp_path)
    assert "'index.index_options.m' is written with dots" in exc.message and exc.line == 1
    assert "index:\\n  index_options:\\n    m: ..." in (exc.hint or "")


@pytest.mark.parametrize("alias,words", [("a" * 249, "too long"), ("é" * 125, "too long"), ("..", "'.'"),
                                         ("a\x00b", "control")])
def test_alias_names_elasticsearch_would_refuse_are_refused_here(alias: str, words: str) -> None:
    exc = error(overrides={"index.alias": alias})
    assert "index.alias" in exc.message and words in exc.message
    assert load(overrides={"index.alias": "a" * 248}).index.first_index == "a" * 248 + "-000001"
