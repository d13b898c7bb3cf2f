"""Where a text model comes from: a local directory or a hub id, pinned to a revision.

The revision is what makes ``toolkit deploy-model`` idempotent: the hub commit hash for a hub id,
a hash of the files for a local directory. Nothing here imports torch.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from toolkit.errors import ModelError, ValidationError

# Same rule as Elasticsearch (and toolkit.settings): lowercase, digits, - _ ., alphanumeric ends, <= 64.
MODEL_ID_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_\-.]{0,62}[a-z0-9])?$")
# Repository files a sentence-transformers text model never needs for PyTorch (ONNX/OpenVINO exports,
# TF/Flax weights): skipping them keeps the download to what tracing and parity load.
_HUB_IGNORE = ["onnx/*", "openvino/*", "*.onnx", "*.h5", "*.msgpack", "*.ot", "tf_model*", "flax_model*",
               "rust_model*", "*.tflite", "coreml/*"]
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


@dataclass(frozen=True)
class ModelSource:
    """A text model pinned to a revision.

    ``source`` is what the user named (hub id or directory); ``local_dir`` holds the files;
    ``revision`` is the hub commit hash or ``sha256:<hash>`` of a directory's files.
    """

    source: str
    local_dir: Path
    revision: str

    @property
    def is_local(self) -> bool:
        return not self.revision.startswith("hub:")


def validate_id(value: str, *, what: str = "model id", flag: str = "--model-id") -> str:
    """Raise ValidationError unless ``value`` is a valid Elasticsearch trained model / deployment id.

    Example::

        validate_id("sentence-transformers__clip-vit-b-32-multilingual-v1")
    """
    if not MODEL_ID_RE.match(value):
        raise ValidationError(
            f"'{value}' is not a valid {what}: use lowercase letters, digits, '-', '_' and '.', start and "
            "end with a letter or digit, at most 64 characters", hint=f"pass a valid id with {flag}")
    return value


def dir_revision(path: Path) -> str:
    """``sha256:<16 hex>`` over the relative paths and contents of every file under ``path``.

    Example::

        dir_revision(Path("models/my-text-model"))   # 'sha256:3f2a...'
    """
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        rel = file.relative_to(path).as_posix()
        if rel.startswith(".") or "__pycache__" in rel:
            continue
        digest.update(rel.encode() + b"\0")
        with file.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
        digest.update(b"\0")
    return "sha256:" + digest.hexdigest()[:16]


def hub_repo(name: str) -> str:
    """Short sentence-transformers names (``clip-ViT-B-32``) live under ``sentence-transformers/``."""
    return name if "/" in name else f"sentence-transformers/{name}"


def resolve_source(source: str) -> ModelSource:
    """Pin a hub id or a local directory to a revision, downloading a hub model's files if needed.

    Args:
        source: a sentence-transformers model directory, or a hub id such as
            ``sentence-transformers/clip-ViT-B-32-multilingual-v1``.

    Example::

        src = resolve_source("tests-data/tiny-text")
        src.revision   # 'sha256:...'
    """
    local = Path(source).expanduser()
    if local.is_dir():
        if not (local / "modules.json").is_file() and not (local / "config.json").is_file():
            raise ModelError(f"{local} is not a sentence-transformers model directory (no modules.json)",
                             hint="pass a sentence-transformers model directory or hub id with --model")
        return ModelSource(source=str(local.resolve()), local_dir=local.resolve(),
                           revision=dir_revision(local))
    if looks_like_path(source):
        raise ModelError(f"model directory {source} does not exist",
                         hint="pass an existing directory or a hub id with --model")
    return _resolve_hub(source)


def looks_like_path(source: str) -> bool:
    return source.startswith((".", "/", "~")) or source.count("/") > 1 or "\\" in source


def _resolve_hub(source: str) -> ModelSource:
    repo = hub_repo(source)
    try:
        from huggingface_hub import HfApi, snapshot_download
    except ImportError as exc:  # pragma: no cover - comes with sentence-transformers
        raise ModelError("huggingface_hub is not installed",
                         hint="pip install sentence-transformers") from exc
    try:
        info = HfApi().model_info(repo)
        names = {s.rfilename for s in (info.siblings or [])}
        ignore = list(_HUB_IGNORE)
        # Both weight formats are often published; one is enough.
        if "model.safetensors" in names and "pytorch_model.bin" in names:
            ignore.append("pytorch_model.bin")
        folder = snapshot_download(repo, revision=info.sha, ignore_patterns=ignore)
    except Exception as online_exc:  # offline or hub trouble: a cached copy still pins a revision
        try:
            folder = snapshot_download(repo, local_files_only=True)
        except Exception:
            raise ModelError(f"cannot fetch model '{repo}' from the Hugging Face hub "
                             f"({type(online_exc).__name__}: {online_exc})",
                             hint="check the hub id given with --model / text_model.hub_id, network "
                                  "access, or pass a local model directory") from online_exc
    path = Path(folder)
    return ModelSource(source=source, local_dir=path, revision=f"hub:{path.name}")


def weight_bytes(model_dir: Path) -> int:
    """Size of the weight files under a model directory (one format only), ~ the traced file's size.

    Example::

        weight_bytes(Path("models/my-text-model"))   # 540_000_000
    """
    files = [p for p in model_dir.rglob("*") if p.is_file() and p.suffix in _WEIGHT_SUFFIXES]
    by_folder: dict[Path, list[Path]] = {}
    for f in files:
        by_folder.setdefault(f.parent, []).append(f)
    total = 0
    for group in by_folder.values():
        safetensors = [f for f in group if f.suffix == ".safetensors"]
        chosen = safetensors or group
        total += sum(f.stat().st_size for f in chosen)
    return total


def st_max_seq_length(model_dir: Path) -> int | None:
    """The ``max_seq_length`` sentence-transformers truncates at (None when the model does not say).

    This, not the tokenizer's ``model_max_length`` (512), is what the local model uses: the default
    multilingual CLIP text model says 128.
    """
    cfg = model_dir / "sentence_bert_config.json"
    if cfg.is_file():
        value = json.loads(cfg.read_text(encoding="utf-8")).get("max_seq_length")
        if value:
            return int(value)
    return None


def local_torch_version() -> str | None:
    """The installed torch version without importing torch (``"2.7.1"``; None when absent)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch").split("+")[0]
    except PackageNotFoundError:
        return None
