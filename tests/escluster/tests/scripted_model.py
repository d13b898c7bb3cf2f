"""A tiny TorchScript text-embedding model and the requests that put it into the test cluster.

Shared by the ML tests in this folder. Example::

    definition = mean_embedding()
    deploy_with_client(Elasticsearch(escluster.url), definition, embedding_size=DIMS)
"""

from __future__ import annotations

import base64
import io
from typing import Any

import pytest

from tests.escluster.errors import ESError
from tests.escluster.ml import MLStore

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "dog", "cat", "snow"]
DIMS = 4


def mean_embedding(vocab: list[str] = VOCAB, *, bias: float = 0.1) -> bytes:
    """A scripted model: the masked mean of a fixed token embedding table, [batch, DIMS].

    Row ``i`` of the table is ``(i * DIMS + d) / 10 + bias`` for ``d`` in ``range(DIMS)``.
    """
    import torch

    class MeanEmbedding(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            table = torch.arange(len(vocab) * DIMS, dtype=torch.float32).reshape(len(vocab), DIMS)
            self.table = torch.nn.Parameter(table / 10.0 + bias)

        def forward(
            self,
            input_ids: torch.Tensor,
            attention_mask: torch.Tensor,
            token_type_ids: torch.Tensor,
            position_ids: torch.Tensor,
        ) -> torch.Tensor:
            mask = attention_mask.unsqueeze(-1).to(torch.float32)
            return (self.table[input_ids] * mask).sum(1) / mask.sum(1).clamp(min=1.0)

    buffer = io.BytesIO()
    torch.jit.save(torch.jit.script(MeanEmbedding()), buffer)
    return buffer.getvalue()


def definition_part(chunk: bytes, total_length: int, total_parts: int) -> dict[str, Any]:
    """The body of ``PUT _ml/trained_models/<id>/definition/<part>`` carrying ``chunk``."""
    return {
        "definition": base64.b64encode(chunk).decode(),
        "total_definition_length": total_length,
        "total_parts": total_parts,
    }


def deploy_with_client(
    es: Any, definition: bytes, model_id: str = "tiny", *, embedding_size: int | None = None
) -> None:
    """Put the model (one definition part, :data:`VOCAB`) with the official client and start it."""
    options: dict[str, Any] = {"tokenization": {"bert": {"do_lower_case": True}}}
    if embedding_size is not None:
        options["embedding_size"] = embedding_size
    es.ml.put_trained_model(
        model_id=model_id,
        model_type="pytorch",
        input={"field_names": ["text_field"]},
        inference_config={"text_embedding": options},
    )
    part = definition_part(definition, len(definition), 1)
    es.ml.put_trained_model_definition_part(model_id=model_id, part=0, **part)
    es.ml.put_trained_model_vocabulary(model_id=model_id, vocabulary=VOCAB)
    es.ml.start_trained_model_deployment(model_id=model_id, wait_for="started")


class DirectML:
    """Calls :meth:`MLStore.handle` directly; a subclass sets ``self.ml``.

    ``store("PUT", "trained_models/x", body, **params)`` returns the body of a 200; ``store.error(...)``
    returns the :class:`ESError` the same call raises.
    """

    ml: MLStore

    def __call__(self, method: str, path: str, body: Any = None, **params: Any) -> Any:
        status, out = self.ml.handle(method, path.split("/"), {k: str(v) for k, v in params.items()}, body)
        assert status == 200
        return out

    def error(self, method: str, path: str, body: Any = None, **params: Any) -> ESError:
        with pytest.raises(ESError) as info:
            self(method, path, body, **params)
        return info.value
