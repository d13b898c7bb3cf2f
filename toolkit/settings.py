"""One settings model, resolved in one documented order: flags > environment > YAML file > defaults.

The YAML file is ``toolkit.yaml`` in the working directory, or the path given with ``--config``
(``TOOLKIT_CONFIG``). Unknown keys and wrong types are errors naming the key and the file line.
Every value remembers where it came from, so ``toolkit config show`` can say so; secrets are
``SecretStr`` and are masked whenever settings are shown.

Example::

    settings = load_settings(overrides={"elasticsearch.url": "http://127.0.0.1:9200"})
    settings.index.alias            # "images"
    settings.origin("elasticsearch.url")   # "flag"
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic import ValidationError as PydanticValidationError

from toolkit.errors import ConfigError

# Environment variables, one constant each (the README lists them).
ENV_URL = "ES_URL"
ENV_API_KEY = "ES_API_KEY"
ENV_USERNAME = "ES_USERNAME"
ENV_PASSWORD = "ES_PASSWORD"
ENV_CA_CERTS = "ES_CA_CERTS"
ENV_VERIFY_CERTS = "ES_VERIFY_CERTS"
ENV_CONFIG = "TOOLKIT_CONFIG"
ENV_VARS: dict[str, str] = {
    ENV_URL: "elasticsearch.url",
    ENV_API_KEY: "elasticsearch.api_key",
    ENV_USERNAME: "elasticsearch.username",
    ENV_PASSWORD: "elasticsearch.password",
    ENV_CA_CERTS: "elasticsearch.ca_certs",
    ENV_VERIFY_CERTS: "elasticsearch.verify_certs",
}
DEFAULT_CONFIG_FILE = "toolkit.yaml"
DEFAULT_TEXT_MODEL = "sentence-transformers/clip-ViT-B-32-multilingual-v1"
DEFAULT_IMAGE_MODEL = "clip-ViT-B-32"
MASK = "********"

_MODEL_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_\-.]{0,62}[a-z0-9])?$")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ElasticsearchSettings(_Section):
    url: str = "http://localhost:9200"
    api_key: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    ca_certs: str | None = None
    verify_certs: bool = True
    request_timeout: float = Field(default=30.0, gt=0)


class AdaptiveAllocations(_Section):
    enabled: bool = False
    min_number_of_allocations: int = Field(default=1, ge=0)
    max_number_of_allocations: int = Field(default=4, ge=1)


class TextModelSettings(_Section):
    hub_id: str = DEFAULT_TEXT_MODEL
    """Hub id or local directory of a sentence-transformers text model."""
    model_id: str | None = None
    """Id in the cluster; derived from hub_id the way eland does when empty."""
    deployment_id: str | None = None
    number_of_allocations: int = Field(default=1, ge=1)
    threads_per_allocation: int = Field(default=1, ge=1, le=32)
    queue_capacity: int = Field(default=1024, ge=1)
    priority: Literal["normal", "low"] = "normal"
    adaptive_allocations: AdaptiveAllocations = AdaptiveAllocations()
    start_timeout: float = Field(default=300.0, gt=0)

    @field_validator("threads_per_allocation")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError("must be a power of 2 (1, 2, 4, 8, 16 or 32)")
        return v

    @field_validator("model_id")
    @classmethod
    def _valid_id(cls, v: str | None) -> str | None:
        if v is not None and not _MODEL_ID_RE.match(v):
            raise ValueError("model ids use lowercase letters, digits, '-', '_' and '.', start and end "
                             "with a letter or digit, at most 64 characters")
        return v

    @property
    def cluster_model_id(self) -> str:
        """The model id in the cluster: explicit, or derived from the hub id as eland does."""
        return self.model_id or derive_model_id(self.hub_id)

    @property
    def cluster_deployment_id(self) -> str:
        return self.deployment_id or self.cluster_model_id


class ImageModelSettings(_Section):
    name: str = DEFAULT_IMAGE_MODEL
    """Hub id or local directory of a sentence-transformers CLIP model."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["fp32", "bf16"] = "fp32"
    batch_size: int = Field(default=16, ge=1, le=1024)
    decode_workers: int | None = Field(default=None, ge=1)


class IndexOptions(_Section):
    type: Literal["hnsw", "int8_hnsw", "int4_hnsw", "bbq_hnsw", "flat", "int8_flat", "int4_flat",
                  "bbq_flat"] = "int8_hnsw"
    m: int | None = Field(default=16, ge=2, le=512)
    ef_construction: int | None = Field(default=100, ge=10, le=3200)

    def as_mapping(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type}
        if self.type.endswith("hnsw"):
            if self.m is not None:
                out["m"] = self.m
            if self.ef_construction is not None:
                out["ef_construction"] = self.ef_construction
        return out


class IndexSettings(_Section):
    alias: str = "images"
    """Name users search; the first concrete index is ``<alias>-000001`` behind it."""
    shards: int = Field(default=1, ge=1, le=1024)
    replicas: int = Field(default=0, ge=0)
    refresh_interval: str = "1s"
    similarity: Literal["cosine", "dot_product", "l2_norm", "max_inner_product"] = "cosine"
    image_dims: int = Field(default=512, ge=1, le=4096)
    caption_dims: int = Field(default=512, ge=1, le=4096)
    index_options: IndexOptions = IndexOptions()
    template_name: str = "toolkit-images"
    pipeline: str = "toolkit-caption-embedding"

    @field_validator("alias")
    @classmethod
    def _index_name(cls, v: str) -> str:
        if not v or v != v.lower() or v[0] in "_-+" or any(c in v for c in ' "*\\<|,>/?#:'):
            raise ValueError("index names are lowercase, do not start with _, - or +, and have no "
                             'spaces or any of \\ / * ? " < > | , # :')
        return v

    @property
    def pattern(self) -> str:
        return f"{self.alias}-*"

    @property
    def first_index(self) -> str:
        return f"{self.alias}-000001"


class FieldNames(_Section):
    """Field names in the index; change them to fit an existing mapping."""

    image_vector: str = "image_embedding"
    caption: str = "caption"
    caption_vector: str = "caption_embedding"
    path: str = "path"
    url: str = "url"
    label: str = "label"
    relation_id: str = "relation_id"
    metadata: str = "metadata"


class IngestSettings(_Section):
    chunk_size: int = Field(default=256, ge=1)
    max_chunk_bytes: int = Field(default=50 * 1024 * 1024, ge=1024)
    max_retries: int = Field(default=5, ge=0)
    initial_backoff: float = Field(default=1.0, ge=0)
    max_backoff: float = Field(default=60.0, ge=0)
    download_timeout: float = Field(default=20.0, gt=0)
    download_retries: int = Field(default=3, ge=0)
    max_download_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    max_image_pixels: int = Field(default=89_478_485, ge=1)
    download_workers: int = Field(default=8, ge=1)


class Settings(_Section):
    elasticsearch: ElasticsearchSettings = ElasticsearchSettings()
    text_model: TextModelSettings = TextModelSettings()
    image_model: ImageModelSettings = ImageModelSettings()
    index: IndexSettings = IndexSettings()
    fields: FieldNames = FieldNames()
    ingest: IngestSettings = IngestSettings()

    # Where each dotted key came from: "default", "file:<path>:<line>", "env:<VAR>", "flag".
    _origins: dict[str, str] = {}

    @model_validator(mode="after")
    def _check_auth(self) -> Settings:
        es = self.elasticsearch
        if es.password is not None and not es.username:
            raise ValueError("elasticsearch.password is set but elasticsearch.username is not")
        return self

    def origin(self, key: str) -> str:
        """Where the value of a dotted key came from (``default`` when nobody set it)."""
        for k in (key, *_parents(key)):
            if k in self._origins:
                return self._origins[k]
        return "default"

    def flat(self, *, masked: bool = True) -> dict[str, Any]:
        """All settings as dotted keys; secrets masked unless ``masked=False``."""
        out: dict[str, Any] = {}

        def walk(model: BaseModel, prefix: str) -> None:
            for name in type(model).model_fields:
                value = getattr(model, name)
                key = f"{prefix}{name}"
                if isinstance(value, BaseModel):
                    walk(value, key + ".")
                elif isinstance(value, SecretStr):
                    out[key] = MASK if masked else value.get_secret_value()
                elif key == "elasticsearch.url" and masked:
                    out[key] = mask_url(value)
                else:
                    out[key] = value

        walk(self, "")
        return out

    def secrets(self) -> list[str]:
        """Secret values currently set (so output can be scrubbed of them)."""
        es = self.elasticsearch
        found = [s.get_secret_value() for s in (es.api_key, es.password) if s is not None and s.get_secret_value()]
        url_password = urlsplit(es.url).password
        if url_password:
            found.append(url_password)
        return found


def mask_url(url: str) -> str:
    """The URL with any password in it masked: ``https://elastic:********@host:9200``."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", f":{MASK}@", 1)
    return parts._replace(netloc=netloc).geturl()


def _parents(key: str) -> list[str]:
    parts = key.split(".")
    return [".".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)]


def derive_model_id(hub_id: str) -> str:
    """The cluster model id eland derives from a hub id or a local path (same rule as eland).

    Example: ``sentence-transformers/clip-ViT-B-32-multilingual-v1`` ->
    ``sentence-transformers__clip-vit-b-32-multilingual-v1``. Long paths keep their last 64 characters.
    """
    model_id = re.sub(r"[\s\\/]", "__", hub_id).lower()[-64:]
    return model_id.removeprefix("__")


def _yaml_lines(text: str, file: str) -> tuple[dict[str, Any], dict[str, int]]:
    """Parse YAML, returning the data and the line (1-based) of every dotted key."""
    import yaml

    try:
        node = yaml.compose(text)
        # Tags such as !!python/object pass compose but not safe_load: both are the user's YAML to fix.
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(f"not valid YAML: {getattr(exc, 'problem', exc)}", file=file,
                          line=(mark.line + 1) if mark else None,
                          hint="fix the YAML syntax") from exc
    lines: dict[str, int] = {}

    def walk(n: Any, prefix: str) -> None:
        if isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                key = f"{prefix}{k.value}"
                lines[key] = k.start_mark.line + 1
                walk(v, key + ".")

    if node is not None:
        walk(node, "")
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of sections (elasticsearch:, index:, ...)",
                          file=file, line=1)
    return data, lines


def _set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    cur = data
    for p in parts[:-1]:
        nxt = cur.get(p)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[p] = nxt
        cur = nxt
    cur[parts[-1]] = value


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in data.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def load_settings(*, config_path: str | Path | None = None, overrides: Mapping[str, Any] | None = None,
                  environ: Mapping[str, str] | None = None, cwd: Path | None = None) -> Settings:
    """Resolve settings: ``overrides`` (flags) > ``environ`` > YAML file > defaults.

    Args:
        config_path: YAML file; when None, ``$TOOLKIT_CONFIG`` or ``toolkit.yaml`` in ``cwd`` if present.
        overrides: dotted keys set by command-line flags; ``None`` values are ignored.
        environ: environment (defaults to ``os.environ``).
        cwd: working directory for the default file.

    Example::

        load_settings(overrides={"index.alias": "photos"}).index.first_index   # "photos-000001"
    """
    env = os.environ if environ is None else environ
    origins: dict[str, str] = {}
    data: dict[str, Any] = {}
    file_lines: dict[str, int] = {}
    file_name: str | None = None

    explicit = config_path is not None or bool(env.get(ENV_CONFIG))
    path = Path(config_path or env.get(ENV_CONFIG) or (cwd or Path.cwd()) / DEFAULT_CONFIG_FILE)
    if path.is_file():
        file_name = str(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read the config file: {exc.strerror}", file=file_name) from exc
        except UnicodeDecodeError as exc:
            raise ConfigError(f"the config file is not UTF-8 text ({exc.reason} at byte {exc.start})",
                              file=file_name, hint="save the file as UTF-8 YAML") from exc
        data, file_lines = _yaml_lines(text, file_name)
        for key in _flatten(data):
            origins[key] = f"file:{file_name}:{file_lines.get(key, 0)}"
    elif explicit and path.exists():
        raise ConfigError(f"config file {path} is not a file (a directory?)",
                          hint="pass the YAML file itself to --config (or fix TOOLKIT_CONFIG)")
    elif explicit:
        raise ConfigError(f"config file {path} does not exist",
                          hint="pass an existing file to --config (or unset TOOLKIT_CONFIG)")

    for var, key in ENV_VARS.items():
        value = env.get(var)
        if value not in (None, ""):
            _set_dotted(data, key, value)
            origins[key] = f"env:{var}"

    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, key, value)
            origins[key] = "flag"

    try:
        settings = Settings.model_validate(data)
    except PydanticValidationError as exc:
        raise _config_error(exc, origins, file_lines, file_name) from exc
    settings._origins = origins
    return settings


def _config_error(exc: PydanticValidationError, origins: dict[str, str], file_lines: dict[str, int],
                  file_name: str | None) -> ConfigError:
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    origin = origins.get(key, "")
    if first["type"] == "extra_forbidden":
        section = key.rsplit(".", 1)[0] if "." in key else ""
        known = _known_keys(section)
        msg = f"unknown key '{key}'" + (f" (known keys here: {', '.join(known)})" if known else "")
        return ConfigError(msg, key=key, file=file_name, line=file_lines.get(key),
                           hint="remove or rename the key; `toolkit config show` lists every key")
    # pydantic prefixes validator messages with "Value error, "; the key already says what is wrong.
    detail = str(first["msg"]).removeprefix("Value error, ")
    if not key:
        # A rule across keys: say where each key it names came from (env, flag or file line), not the file.
        named = [f"{k} from {origins[k]}" for k in sorted(origins) if k in detail]
        return ConfigError(f"invalid settings: {detail}" + (f" ({'; '.join(named)})" if named else ""),
                           hint="set the missing key or remove the one that needs it (where each comes "
                                "from is in parentheses)")
    if origin.startswith("env:"):
        return ConfigError(f"{origin[4:]}: invalid value for '{key}': {detail}", key=key,
                           hint=f"fix the environment variable {origin[4:]}")
    if origin == "flag":
        return ConfigError(f"invalid value for '{key}': {detail}", key=key, hint="fix the flag's value")
    if key in file_lines:
        return ConfigError(f"invalid value for '{key}': {detail}", key=key, file=file_name,
                           line=file_lines[key], hint="fix the value in the config file")
    return ConfigError(f"invalid settings: {key or 'settings'}: {detail}", key=key, file=file_name)


def _known_keys(section: str) -> list[str]:
    model: type[BaseModel] = Settings
    for part in filter(None, section.split(".")):
        field = model.model_fields.get(part)
        ann = field.annotation if field else None
        if not (isinstance(ann, type) and issubclass(ann, BaseModel)):
            return []
        model = ann
    return sorted(model.model_fields)
