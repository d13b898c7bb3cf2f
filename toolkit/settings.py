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

import base64
import binascii
import os
import re
import stat
import unicodedata
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator, model_validator
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
# Keys whose values (or parts) are secret: never quoted in messages or exception chains.
SECRET_KEYS = frozenset({"elasticsearch.url", "elasticsearch.api_key", "elasticsearch.password"})
DEFAULT_CONFIG_FILE = "toolkit.yaml"
DEFAULT_TEXT_MODEL = "sentence-transformers/clip-ViT-B-32-multilingual-v1"
DEFAULT_IMAGE_MODEL = "clip-ViT-B-32"
MASK = "********"
# A toolkit config is a few KB; bigger files (or aliases that expand to more values) are refused before
# parsing/expanding them, so a 10 MB file or a "billion laughs" alias bomb cannot hang or eat memory.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_CONFIG_NODES = 10_000
MAX_CONFIG_DEPTH = 32
# Upper bound of every duration setting: more overflows the OS timer ("timestamp out of range").
_DAY = 24 * 3600.0

_MODEL_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_\-.]{0,62}[a-z0-9])?$")


class _Section(BaseModel):
    # allow_inf_nan=False: "nan"/"inf" in any float setting is an error, never sent as non-JSON NaN.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_API_KEY_RE = re.compile(r"^[\x21-\x7e]+$")


def _strip(value: Any) -> Any:
    """Surrounding whitespace off a string (``$(cat key.txt)`` ends with a newline); blank means unset."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if isinstance(value, str):
        value = value.strip()
        return value or None
    return value


class ElasticsearchSettings(_Section):
    url: str = "http://localhost:9200"
    api_key: SecretStr | None = None
    """The ``encoded`` value of the create-API-key response (base64), or ``id:api_key``."""
    username: str | None = None
    password: SecretStr | None = None
    ca_certs: str | None = None
    verify_certs: bool = True
    request_timeout: float = Field(default=30.0, gt=0, le=_DAY)

    @field_validator("url", "api_key", "username", "password", "ca_certs", mode="before")
    @classmethod
    def _stripped(cls, v: Any, info: ValidationInfo) -> Any:
        v = _strip(v)
        return "http://localhost:9200" if v is None and info.field_name == "url" else v

    @field_validator("url")
    @classmethod
    def _usable_url(cls, v: str) -> str:
        return check_url(v)

    @field_validator("api_key")
    @classmethod
    def _api_key_shape(cls, v: SecretStr | None) -> SecretStr | None:
        # Messages never quote the key: it is a secret.
        if v is None:
            return v
        key = v.get_secret_value()
        if key.lower().startswith(("apikey ", "bearer ", "basic ")):
            raise ValueError("the API key starts with an Authorization scheme ('ApiKey ...'): give the key alone")
        if key.startswith("{"):
            raise ValueError("the API key is a JSON document (the whole create-API-key response?): give its "
                             "'encoded' value alone")
        if len(key) > 4096:
            raise ValueError(f"the API key is {len(key)} characters long; an Elasticsearch API key is about 60 "
                             "(the 'encoded' value of the create-API-key response)")
        if not _API_KEY_RE.match(key):
            raise ValueError("the API key has a space, line break, control or non-ASCII character inside it; "
                             "an API key is one word: the 'encoded' value of the create-API-key response, "
                             "or id:api_key")
        return v

    @field_validator("username")
    @classmethod
    def _username_shape(cls, v: str | None) -> str | None:
        if v is not None and ":" in v:
            # Basic auth is "user:password"; Elasticsearch splits at the first colon.
            raise ValueError("a username cannot contain ':' (HTTP Basic auth separates user and password "
                             "with it)")
        if v is not None and _CONTROL_RE.search(v):
            raise ValueError("the username has a control character (a line break?) inside it")
        return v


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
    start_timeout: float = Field(default=300.0, gt=0, le=_DAY)

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


class PrecisionThresholds(_Section):
    """The parity guard: the lowest cosine to fp32 any image of the first batch may have, per precision."""

    bf16: float = Field(default=0.999, ge=-1.0, le=1.0)
    fp16: float = Field(default=0.999, ge=-1.0, le=1.0)
    int8: float = Field(default=0.995, ge=-1.0, le=1.0)


class ImageModelSettings(_Section):
    name: str = DEFAULT_IMAGE_MODEL
    """Hub id or local directory of a sentence-transformers CLIP model."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    precision: Literal["auto", "int8", "bf16", "fp16", "fp32"] = "auto"
    """auto: the fastest precision whose first-batch vectors agree with fp32 (``min_cosine``)."""
    strict_precision: bool = False
    """An explicit reduced precision that fails the guard stops the run instead of falling back to fp32."""
    min_cosine: PrecisionThresholds = PrecisionThresholds()
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
        if v in (".", "..") or _CONTROL_RE.search(v):
            raise ValueError("an index name cannot be '.' or '..' or hold control characters")
        # MetadataCreateIndexService.MAX_INDEX_NAME_BYTES (255), for the first index <alias>-000001.
        if len(v.encode("utf-8")) + len("-000001") > 255:
            raise ValueError("the alias is too long: <alias>-000001 must fit in 255 bytes (UTF-8)")
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
    initial_backoff: float = Field(default=1.0, ge=0, le=_DAY)
    max_backoff: float = Field(default=60.0, ge=0, le=_DAY)
    download_timeout: float = Field(default=20.0, gt=0, le=_DAY)
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
        userinfo = _userinfo(es.url)
        if userinfo is not None:
            user, _, pw = userinfo.partition(":")
            same = (es.api_key is None and unquote(user) == (es.username or unquote(user))
                    and (es.password is None or es.password.get_secret_value() == unquote(pw)))
            if not same:
                # The client would send one and drop the other without a word.
                raise ValueError("credentials are given twice, and differ: in elasticsearch.url (user:password@) "
                                 "and in elasticsearch.api_key / elasticsearch.username / elasticsearch.password")
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
        """Secret values currently set, in every form they travel in (so output can be scrubbed of them)."""
        es = self.elasticsearch
        return secret_forms(api_key=es.api_key.get_secret_value() if es.api_key else None,
                            username=es.username,
                            password=es.password.get_secret_value() if es.password else None, url=es.url)


def secret_forms(*, api_key: str | None = None, username: str | None = None, password: str | None = None,
                 url: str | None = None) -> list[str]:
    """Every form a secret can appear in: raw, stripped, the key of ``id:key``, the base64 of the
    ``Authorization`` header (``ApiKey <b64>``, ``Basic <b64>``), percent-decoded URL passwords.

    Example: ``secret_forms(api_key="id1:k3y")`` -> ``["id1:k3y", "k3y", "aWQxOmszeQ=="]``.
    """
    found: list[str] = []

    def add(value: str | None) -> None:
        if value and value not in found:
            found.append(value)

    def b64(text: str) -> str:
        return base64.b64encode(text.encode("utf-8")).decode("ascii")

    if api_key:
        for key in {api_key, api_key.strip()}:
            add(key)
            if ":" in key:  # id:api_key: the client sends base64("id:api_key")
                add(key.partition(":")[2])
                add(b64(key))
            else:  # encoded: base64 of "id:api_key"
                try:
                    decoded = base64.b64decode(key, validate=True).decode("utf-8")
                except (binascii.Error, UnicodeDecodeError, ValueError):
                    decoded = ""
                if ":" in decoded:
                    add(decoded)
                    add(decoded.partition(":")[2])
    if password:
        for pw in {password, password.strip()}:
            add(pw)
            add(b64(f"{(username or '').strip()}:{pw}"))
    if url:
        userinfo = _userinfo(url)
        if userinfo and ":" in userinfo:
            user, _, pw = userinfo.partition(":")
            add(pw)
            add(unquote(pw))
            add(b64(f"{unquote(user)}:{unquote(pw)}"))
    return found


def _split_url(url: str) -> tuple[str, str | None, str]:
    """(``scheme://`` or "", userinfo or None, the rest) for any URL shape, with or without a scheme.

    The userinfo runs to the last '@' before any '?' or '#': a password may hold '/' or '@'.
    """
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*://)?(.*)$", url, re.DOTALL)
    assert m is not None  # the pattern matches any string
    prefix, rest = m.group(1) or "", m.group(2)
    head = re.split(r"[?#]", rest, maxsplit=1)[0]
    at = head.rfind("@")
    if at < 0:
        return prefix, None, rest
    return prefix, rest[:at], rest[at + 1:]


def _userinfo(url: str) -> str | None:
    return _split_url(url)[1]


def mask_url(url: str) -> str:
    """The URL with any password in it masked, whatever its shape.

    ``https://elastic:pw@host:9200`` -> ``https://elastic:********@host:9200``; also without a scheme
    (``elastic:pw@host:9200``) and with '/' or '@' inside the password.
    """
    prefix, userinfo, rest = _split_url(url)
    if userinfo is None or ":" not in userinfo:
        return url
    return f"{prefix}{userinfo.partition(':')[0]}:{MASK}@{rest}"


_URL_HINT = "set ES_URL / --es-url like http://localhost:9200 or https://host:443"


def check_url(url: str) -> str:
    """The URL if the client can use it as given (scheme lowercased), else ValueError saying why, masked.

    Refused: no scheme, a scheme other than http/https, spaces or control characters, no host, a port
    outside 1-65535, http without a port, a query string or fragment (the client drops them silently),
    and a password holding an unencoded '/', '?' or '#'.
    """
    shown = mask_url(url)
    # Invisible characters too (a zero-width space or BOM pasted with the URL).
    if any(c.isspace() or unicodedata.category(c) in ("Cc", "Cf", "Zs", "Zl", "Zp") for c in url):
        raise ValueError(f"'{shown}' has a space, control or invisible character in it ({_URL_HINT})")
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.\-]*)://", url)
    if not m:
        raise ValueError(f"'{shown}' has no scheme: write http://{shown} or https://{shown}")
    scheme = m.group(1).lower()
    if scheme not in ("http", "https"):
        raise ValueError(f"'{shown}' uses {scheme}://, but Elasticsearch speaks only http:// or https:// "
                         f"({_URL_HINT})")
    url = scheme + url[len(m.group(1)):]
    prefix, userinfo, rest = _split_url(url)
    parts = urlsplit(url)
    if userinfo is not None and parts.netloc.rpartition("@")[0] != userinfo:
        raise ValueError(f"the password in '{shown}' has a '/', '?' or '#' in it: percent-encode it (%2F, %3F, "
                         "%23) or set ES_USERNAME and ES_PASSWORD instead")
    if not parts.hostname:
        raise ValueError(f"'{shown}' has no host ({_URL_HINT})")
    try:
        port = parts.port
    except ValueError:
        port = -1
    if port is not None and not 1 <= port <= 65535:
        raise ValueError(f"'{shown}' has a port that is not a number from 1 to 65535 ({_URL_HINT})")
    if port is None and scheme == "http":
        raise ValueError(f"'{shown}' has no port, and the client needs one for http: Elasticsearch listens on "
                         f"9200 (http://{parts.hostname}:9200)")
    if "?" in rest or "#" in rest:
        raise ValueError(f"'{shown}' has a query string or #fragment, which the client would drop: remove it "
                         "(a path prefix such as https://host/es is fine)")
    return url


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
    """Parse YAML, returning the data and the line (1-based) of every dotted key.

    A key given twice in one mapping is an error naming both lines (YAML would keep the last silently);
    aliases are expanded while counting, so an alias bomb is refused before anything expands it.
    """
    import yaml

    def fail(exc: yaml.YAMLError) -> ConfigError:
        mark = getattr(exc, "problem_mark", None)
        return ConfigError(f"not valid YAML: {getattr(exc, 'problem', None) or exc}", file=file,
                           line=(mark.line + 1) if mark else None, hint="fix the YAML syntax")

    deep = ConfigError(f"the YAML nests deeper than {MAX_CONFIG_DEPTH} levels", file=file,
                       hint="a toolkit config nests at most 3 levels (section, key, sub-key)")
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise fail(exc) from exc
    except RecursionError:
        raise deep from None
    lines: dict[str, int] = {}
    count = 0

    def walk(n: Any, prefix: str, depth: int) -> None:
        nonlocal count
        count += 1
        if count > MAX_CONFIG_NODES or depth > MAX_CONFIG_DEPTH:
            raise ConfigError(f"the YAML holds more than {MAX_CONFIG_NODES} values or nests deeper than "
                              f"{MAX_CONFIG_DEPTH} levels (aliases that repeat each other?)", file=file,
                              line=n.start_mark.line + 1, hint="write the settings out without nested aliases")
        if isinstance(n, yaml.MappingNode):
            seen: dict[str, int] = {}
            for k, v in n.value:
                if isinstance(k, yaml.ScalarNode) and k.tag == "tag:yaml.org,2002:merge":
                    walk(v, prefix, depth + 1)
                    continue
                name = str(k.value) if isinstance(k, yaml.ScalarNode) else "?"
                key = f"{prefix}{name}"
                line = k.start_mark.line + 1
                if name in seen:
                    raise ConfigError(f"key '{key}' is given twice (lines {seen[name]} and {line}); YAML would "
                                      "silently keep the last one", key=key, file=file, line=line,
                                      hint="remove one of them")
                seen[name] = line
                lines.setdefault(key, line)
                walk(v, key + ".", depth + 1)
        elif isinstance(n, yaml.SequenceNode):
            for item in n.value:
                walk(item, prefix, depth + 1)

    if node is not None:
        walk(node, "", 0)
    try:
        # Tags such as !!python/object pass compose but not safe_load: both are the user's YAML to fix.
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise fail(exc) from exc
    except RecursionError:
        raise deep from None
    if not isinstance(data, dict):
        raise ConfigError("the top level must be a mapping of sections (elasticsearch:, index:, ...), not "
                          f"a {type(data).__name__}", file=file, line=1,
                          hint="write it like 'elasticsearch:\n  url: http://localhost:9200'")
    return data, lines


def _file_kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _read_config(path: Path) -> str:
    """The config file's text, refusing anything but a regular UTF-8 file of at most MAX_CONFIG_BYTES."""
    file_name = str(path)
    try:
        # O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then says what it is.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise ConfigError(f"cannot read the config file: {exc.strerror}", file=file_name) from exc
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise ConfigError(f"config file {path} is {_file_kind(info.st_mode)}, not a file",
                          hint="pass the YAML file itself to --config (or fix TOOLKIT_CONFIG, or move "
                               f"the {DEFAULT_CONFIG_FILE} that is in the way)")
    with os.fdopen(fd, "rb") as fh:
        if info.st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"the config file is {info.st_size / 1024**2:.1f} MB; a toolkit config is a few KB "
                              f"(at most {MAX_CONFIG_BYTES // 1024} KB)", file=file_name,
                              hint="point --config at the toolkit's YAML settings file")
        try:
            raw = fh.read(MAX_CONFIG_BYTES + 1)
        except OSError as exc:
            raise ConfigError(f"cannot read the config file: {exc.strerror}", file=file_name) from exc
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"the config file is over {MAX_CONFIG_BYTES // 1024} KB; a toolkit config is a few KB",
                          file=file_name, hint="point --config at the toolkit's YAML settings file")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"the config file is not UTF-8 text ({exc.reason} at byte {exc.start})",
                          file=file_name, hint="save the file as UTF-8 YAML") from exc


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

    env_config = (env.get(ENV_CONFIG) or "").strip()  # $(cat ...) leaves a newline; blank means unset
    explicit = config_path is not None or bool(env_config)
    path = Path(config_path or env_config or (cwd or Path.cwd()) / DEFAULT_CONFIG_FILE)
    if path.exists():
        # A directory, FIFO or device named toolkit.yaml is an error too: never silently skipped.
        file_name = str(path)
        data, file_lines = _yaml_lines(_read_config(path), file_name)
        for key in _flatten(data):
            origins[key] = f"file:{file_name}:{file_lines.get(key, 0)}"
    elif explicit:
        raise ConfigError(f"config file {path} does not exist",
                          hint="pass an existing file to --config (or unset TOOLKIT_CONFIG)")

    for var, key in ENV_VARS.items():
        value = env.get(var)
        # Surrounding whitespace ($(cat file) keeps the newline) is dropped; blank means unset.
        if value is not None and value.strip():
            _set_dotted(data, key, value.strip())
            origins[key] = f"env:{var}"

    for key, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, key, value)
            origins[key] = "flag"

    try:
        settings = Settings.model_validate(data)
    except PydanticValidationError as exc:
        error = _config_error(exc, origins, file_lines, file_name)
        if error.key in SECRET_KEYS:
            # pydantic's error repeats the input (the secret): do not chain it where a traceback could show it.
            raise error from None
        raise error from exc
    settings._origins = origins
    return settings


def _config_error(exc: PydanticValidationError, origins: dict[str, str], file_lines: dict[str, int],
                  file_name: str | None) -> ConfigError:
    first = exc.errors()[0]
    key = ".".join(str(p) for p in first["loc"])
    origin = origins.get(key, "")
    if first["type"] == "extra_forbidden":
        last = str(first["loc"][-1])
        if "." in last:
            # "index.alias: x" at the top: the dotted names of `config show` are not YAML keys.
            nested = "\n".join(f"{'  ' * i}{part}:" for i, part in enumerate(last.split("."))) + " ..."
            return ConfigError(f"key '{key}' is written with dots; in YAML each part is its own level",
                               key=key, file=file_name, line=file_lines.get(key),
                               hint=f"write it nested, like {nested!r}")
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
    example = f" ({_URL_HINT.removeprefix('set ES_URL / --es-url ')})" if key == "elasticsearch.url" else ""
    if origin.startswith("env:"):
        return ConfigError(f"{origin[4:]}: invalid value for '{key}': {detail}", key=key,
                           hint=f"fix the environment variable {origin[4:]}{example}")
    if origin == "flag":
        return ConfigError(f"invalid value for '{key}': {detail}", key=key, hint=f"fix the flag's value{example}")
    if key in file_lines:
        return ConfigError(f"invalid value for '{key}': {detail}", key=key, file=file_name,
                           line=file_lines[key], hint=f"fix the value in the config file{example}")
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
