"""Local work: trace a sentence-transformers text model with eland into files ready to upload.

``trace()`` writes ``traced_pytorch_model.pt``, ``vocabulary.json`` and ``config.json`` (the trained
model config body, with the toolkit's provenance in ``metadata.toolkit``) into a folder;
``load_traced()`` reads them back. The cluster side (``toolkit.textmodel.lifecycle``) only reads files.
"""

from __future__ import annotations

import contextlib
import json
import logging
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from toolkit.errors import ModelError
from toolkit.textmodel.source import ModelSource, local_torch_version, resolve_source, st_max_seq_length

MODEL_FILE = "traced_pytorch_model.pt"
VOCAB_FILE = "vocabulary.json"
CONFIG_FILE = "config.json"


@dataclass(frozen=True)
class TracedModel:
    """The files of a traced model and what they say about it."""

    model_path: Path
    vocab_path: Path
    config: dict[str, Any]
    """The body of ``PUT _ml/trained_models/<id>``."""

    @property
    def provenance(self) -> dict[str, Any]:
        return dict((self.config.get("metadata") or {}).get("toolkit") or {})

    @property
    def source(self) -> str:
        return str(self.provenance.get("source", ""))

    @property
    def revision(self) -> str:
        return str(self.provenance.get("revision", ""))

    @property
    def embedding_size(self) -> int | None:
        size = self.config.get("inference_config", {}).get("text_embedding", {}).get("embedding_size")
        return int(size) if size is not None else None

    @property
    def max_sequence_length(self) -> int | None:
        embedding = self.config.get("inference_config", {}).get("text_embedding", {})
        tokenization = embedding.get("tokenization", {})
        for spec in tokenization.values():
            if isinstance(spec, dict) and spec.get("max_sequence_length"):
                return int(spec["max_sequence_length"])
        return None

    @property
    def file_bytes(self) -> int:
        return self.model_path.stat().st_size


def provenance_of(config: dict[str, Any]) -> dict[str, Any]:
    """The ``metadata.toolkit`` block of a stored model config ({} for models the toolkit did not upload)."""
    return dict((config.get("metadata") or {}).get("toolkit") or {})


def trace(hub_id_or_dir: str | ModelSource, out_dir: str | Path, *, max_sequence_length: int | None = None,
          es_version: tuple[int, int, int] | None = (9, 2, 0)) -> TracedModel:
    """Trace a sentence-transformers text model as an Elasticsearch ``text_embedding`` model.

    Args:
        hub_id_or_dir: hub id, local model directory, or an already resolved ``ModelSource``.
        out_dir: folder for the traced files (created).
        max_sequence_length: tokens the cluster keeps; defaults to the sentence-transformers
            ``max_seq_length`` (128 for the default model), not the tokenizer's 512.
        es_version: the target cluster's version (eland adds ``embedding_size`` from 8.8).

    Example::

        traced = trace("sentence-transformers/clip-ViT-B-32-multilingual-v1", "build/text-model")
        traced.embedding_size   # 512
    """
    src = hub_id_or_dir if isinstance(hub_id_or_dir, ModelSource) else resolve_source(str(hub_id_or_dir))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    _refuse_clip_models(src)
    max_len = max_sequence_length or st_max_seq_length(src.local_dir)
    try:
        from eland.ml.pytorch.transformers import TransformerModel
    except ImportError as exc:
        raise ModelError(f"eland cannot be imported ({exc})",
                         hint="pip install 'eland>=9.2' torch transformers sentence-transformers") from exc
    try:
        with warnings.catch_warnings(), _quiet_loggers():
            # TracerWarnings and deprecation notes from transformers are noise for users.
            warnings.simplefilter("ignore")
            model = TransformerModel(model_id=str(src.local_dir), task_type="text_embedding",
                                     es_version=es_version, quantize=False, max_model_input_size=max_len)
            model_path, nlp_config, vocab_path = model.save(str(out))
    except Exception as exc:  # eland, transformers and torch raise many types; one message for all
        raise ModelError(f"tracing {src.source} failed: {type(exc).__name__}: {exc}",
                         hint="pass a sentence-transformers text model (BERT/MPNet/XLM-R family) "
                              "with --model") from exc
    config = nlp_config.to_dict()
    config["description"] = f"{src.source} as text_embedding, traced by toolkit"
    config.setdefault("metadata", {})["toolkit"] = {
        "source": src.source,
        "revision": src.revision,
        "max_sequence_length": max_len,
        "torch": local_torch_version(),
    }
    config_path = out / CONFIG_FILE
    config_path.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return TracedModel(model_path=Path(model_path), vocab_path=Path(vocab_path), config=config)


def _refuse_clip_models(src: ModelSource) -> None:
    """A CLIP image+text model (``clip-ViT-B-32``, the image model) cannot run as a text_embedding model;
    eland would fail on it with an unrelated-looking tokenizer error, so say what went wrong first."""
    modules = src.local_dir / "modules.json"
    try:
        types = [str(m.get("type", "")) for m in json.loads(modules.read_text(encoding="utf-8"))]
    except (OSError, ValueError, AttributeError, TypeError):
        return  # not a sentence-transformers layout we can read: eland has its say
    if any(t.endswith("CLIPModel") for t in types):
        raise ModelError(f"{src.source} is a CLIP image+text model (the image model), not a text encoder "
                         "that Elasticsearch can run",
                         hint="deploy its multilingual text encoder instead: --model "
                              "sentence-transformers/clip-ViT-B-32-multilingual-v1 (text_model.hub_id)")


@contextlib.contextmanager
def _quiet_loggers() -> Iterator[None]:
    """transformers and sentence-transformers log deprecation notes while eland loads the model."""
    loggers = [logging.getLogger(name) for name in ("transformers", "sentence_transformers")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def load_traced(folder: str | Path) -> TracedModel:
    """Read a folder written by ``trace()``.

    Example::

        traced = load_traced("build/text-model")
    """
    folder = Path(folder)
    paths = [folder / MODEL_FILE, folder / VOCAB_FILE, folder / CONFIG_FILE]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise ModelError(f"{folder} is not a traced model folder (missing {', '.join(missing)})",
                         hint="trace the model again (toolkit deploy-model does it)")
    config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    return TracedModel(model_path=folder / MODEL_FILE, vocab_path=folder / VOCAB_FILE, config=config)

