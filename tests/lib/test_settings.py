"""Settings resolve flags > environment > YAML > defaults, and bad YAML names the key and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.errors import ConfigError
from toolkit.settings import MASK, derive_model_id, load_settings


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "toolkit.yaml"
    path.write_text(text)
    return path


def test_defaults_when_nothing_is_set(tmp_path: Path) -> None:
    s = load_settings(environ={}, cwd=tmp_path)
    assert s.elasticsearch.url == "http://localhost:9200"
    assert s.text_model.cluster_model_id == "sentence-transformers__clip-vit-b-32-multilingual-v1"
    assert s.index.first_index == "images-000001"
    assert s.origin("index.alias") == "default"


def test_precedence_flag_over_env_over_file_over_default(tmp_path: Path) -> None:
    write(tmp_path, "elasticsearch:\n  url: http://file:9200\nindex:\n  alias: from-file\n  shards: 3\n")
    env = {"ES_URL": "http://env:9200"}
    s = load_settings(environ=env, cwd=tmp_path, overrides={"index.alias": "from-flag"})
    assert (s.index.alias, s.origin("index.alias")) == ("from-flag", "flag")
    assert (s.elasticsearch.url, s.origin("elasticsearch.url")) == ("http://env:9200", "env:ES_URL")
    assert s.index.shards == 3
    assert s.origin("index.shards") == f"file:{tmp_path / 'toolkit.yaml'}:5"
    assert s.origin("index.replicas") == "default"


def test_explicit_config_path_is_used_and_must_exist(tmp_path: Path) -> None:
    other = tmp_path / "other.yaml"
    other.write_text("index:\n  alias: photos\n")
    assert load_settings(config_path=other, environ={}, cwd=tmp_path).index.alias == "photos"
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(config_path=tmp_path / "missing.yaml", environ={}, cwd=tmp_path)


def test_unknown_key_names_the_key_and_line(tmp_path: Path) -> None:
    write(tmp_path, "index:\n  alias: images\n  shardz: 2\n")
    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, cwd=tmp_path)
    assert "unknown key 'index.shardz'" in info.value.message
    assert info.value.line == 3
    assert ":3:" in info.value.message
    assert "shards" in info.value.message  # lists the known keys


def test_wrong_type_names_the_key_and_line(tmp_path: Path) -> None:
    write(tmp_path, "text_model:\n  hub_id: x\n  threads_per_allocation: 3\n")
    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, cwd=tmp_path)
    assert info.value.key == "text_model.threads_per_allocation"
    assert info.value.line == 3
    assert "power of 2" in info.value.message


def test_bad_environment_value_names_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"ES_VERIFY_CERTS": "maybe"}, cwd=tmp_path)
    assert "ES_VERIFY_CERTS" in info.value.message


def test_password_without_username_names_where_it_came_from_not_the_file(tmp_path: Path) -> None:
    write(tmp_path, "index:\n  alias: photos\n")
    with pytest.raises(ConfigError) as info:
        load_settings(environ={"ES_PASSWORD": "pa55word"}, cwd=tmp_path)
    message = info.value.message
    assert message.startswith("invalid settings: elasticsearch.password is set but elasticsearch.username")
    assert "env:ES_PASSWORD" in message and "toolkit.yaml" not in message and "Value error" not in message
    assert info.value.hint


@pytest.mark.parametrize(("content", "expected"), [
    (b"index:\n  alias: !custom photos\n", "not valid YAML"),
    (b"index:\n  alias: !!python/object:os.system x\n", "not valid YAML"),
    (b"\xff\xfeindex: 1\n", "not UTF-8"),
])
def test_unloadable_config_file_is_a_config_error(tmp_path: Path, content: bytes, expected: str) -> None:
    (tmp_path / "toolkit.yaml").write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, cwd=tmp_path)
    assert expected in info.value.message and info.value.hint


def test_config_path_that_is_a_directory_says_so(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(config_path=tmp_path, environ={})
    assert "not a file" in info.value.message


def test_invalid_yaml_reports_the_line(tmp_path: Path) -> None:
    write(tmp_path, "index:\n  alias: [unclosed\n")
    with pytest.raises(ConfigError) as info:
        load_settings(environ={}, cwd=tmp_path)
    assert "not valid YAML" in info.value.message
    assert info.value.line is not None


def test_secrets_are_masked_when_shown(tmp_path: Path) -> None:
    env = {"ES_API_KEY": "s3cr3t-key", "ES_USERNAME": "elastic", "ES_PASSWORD": "pa55word"}
    s = load_settings(environ=env, cwd=tmp_path)
    flat = s.flat()
    assert flat["elasticsearch.api_key"] == MASK
    assert flat["elasticsearch.password"] == MASK
    assert "s3cr3t-key" not in repr(s)
    assert {"s3cr3t-key", "pa55word"} <= set(s.secrets())
    s = load_settings(environ={"ES_URL": "https://elastic:urlpass@host:9200"}, cwd=tmp_path)
    assert "urlpass" not in s.flat()["elasticsearch.url"]
    assert "urlpass" in s.secrets()


def test_invalid_model_id_and_index_name_are_rejected() -> None:
    with pytest.raises(ConfigError, match="model ids"):
        load_settings(environ={}, overrides={"text_model.model_id": "Bad/Id"})
    with pytest.raises(ConfigError, match="lowercase"):
        load_settings(environ={}, overrides={"index.alias": "Images"})


@pytest.mark.parametrize(("hub_id", "expected"), [
    ("sentence-transformers/clip-ViT-B-32-multilingual-v1", "sentence-transformers__clip-vit-b-32-multilingual-v1"),
    ("/models/My Model", "models__my__model"),
    ("a" * 70, "a" * 64),
])
def test_model_id_derived_like_eland(hub_id: str, expected: str) -> None:
    assert derive_model_id(hub_id) == expected
