"""Tiny models built locally in sentence-transformers format (no hub access).

``tiny_text_model()`` / ``tiny_clip_model()`` build once per test session (cached in a temp folder)
and return the directory; the builders themselves live in ``text.py`` and ``image.py``.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
from pathlib import Path

_ROOT: Path | None = None


def _root() -> Path:
    global _ROOT
    if _ROOT is None:
        _ROOT = Path(tempfile.mkdtemp(prefix="toolkit-models-"))
        atexit.register(shutil.rmtree, _ROOT, True)
    return _ROOT


@functools.cache
def tiny_text_model(dense: bool = True) -> Path:
    """A tiny DistilBERT + mean pooling (+ Dense to 512) sentence-transformers model directory."""
    from tests.models.text import build_tiny_text_model

    return build_tiny_text_model(_root() / ("text-dense" if dense else "text-nodense"), dense=dense)


@functools.cache
def tiny_clip_model() -> Path:
    """A tiny CLIP sentence-transformers model directory (projection dims differ from 512)."""
    from tests.models.image import build_tiny_clip_model

    return build_tiny_clip_model(_root() / "clip")
