"""Issue 2's acceptance test: the real eland CLI uploads and starts the tiny text model on the test
cluster, and ``_infer`` then returns what ``SentenceTransformer.encode`` returns locally.

Also checks the ML endpoints through the HTTP layer with the official ``elasticsearch`` client.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.escluster.testing import Handle, running_cluster
from tests.models.text import build_tiny_text_model

MODEL_ID = "tiny-clip-text"
TEXTS = {
    "latin": "A dog in the snow",
    "german": "Eine Katze über der Straße",
    "cjk": "猫在海滩上",
    "japanese": "日本の犬",
    "cyrillic": "собака на снегу",
    "arabic": "كلب",
}


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_text_model(tmp_path_factory.mktemp("models") / "tiny-clip-text")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Handle]:
    with running_cluster(license="trial") as es:
        yield es


def run_eland(url: str, model_dir: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "TRANSFORMERS_OFFLINE": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    command = [
        sys.executable,
        "-m",
        "eland.cli.eland_import_hub_model",
        "--url",
        url,
        "--hub-model-id",
        str(model_dir),
        "--task-type",
        "text_embedding",
        "--start",
        *extra,
    ]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


@pytest.fixture(scope="module")
def imported(cluster: Handle, tiny_text_model: Path) -> Handle:
    result = run_eland(cluster.url, tiny_text_model, "--es-model-id", MODEL_ID)
    assert result.returncode == 0, result.stdout + result.stderr
    return cluster


def test_eland_import_starts_the_model(imported: Handle) -> None:
    from elasticsearch import Elasticsearch

    es = Elasticsearch(imported.url)
    stats = es.ml.get_trained_models_stats(model_id=MODEL_ID)["trained_model_stats"][0]
    assert stats["deployment_stats"]["state"] == "started"
    assert stats["deployment_stats"]["allocation_status"]["state"] == "fully_allocated"
    config = es.ml.get_trained_models(model_id=MODEL_ID)["trained_model_configs"][0]
    # eland's trace keeps the Dense layer: 512 dims, like the real clip-ViT-B-32-multilingual-v1.
    assert config["inference_config"]["text_embedding"]["embedding_size"] == 512
    # eland takes max_sequence_length from the tokenizer's model_max_length (512), not from
    # sentence-transformers' max_seq_length (128): texts longer than 128 tokens differ unless the
    # import passes --max-model-input-length 128.
    assert config["inference_config"]["text_embedding"]["tokenization"]["bert"]["max_sequence_length"] == 512
    assert config["inference_config"]["text_embedding"]["tokenization"]["bert"]["do_lower_case"] is False


def test_infer_matches_sentence_transformers(imported: Handle, tiny_text_model: Path) -> None:
    import numpy as np
    from elasticsearch import Elasticsearch
    from sentence_transformers import SentenceTransformer

    es = Elasticsearch(imported.url)
    local = SentenceTransformer(str(tiny_text_model), device="cpu")
    response = es.ml.infer_trained_model(model_id=MODEL_ID, docs=[{"text_field": t} for t in TEXTS.values()])
    for (script, text), result in zip(TEXTS.items(), response["inference_results"], strict=True):
        remote = np.asarray(result["predicted_value"])
        expected = local.encode(text)
        assert remote.shape == expected.shape == (512,), script
        assert np.abs(remote - expected).max() < 1e-4, script
    # the ingest / query_vector_builder path gives the same vectors (batched alone: float noise only)
    assert imported.ml.infer(MODEL_ID, [TEXTS["cyrillic"]])[0] == pytest.approx(
        response["inference_results"][4]["predicted_value"], abs=1e-5
    )


def test_eland_derives_the_model_id_from_a_local_path() -> None:
    from eland.ml.pytorch.transformers import elasticsearch_model_id

    # Without --es-model-id a local directory becomes the path with "/" -> "__" (last 64 characters).
    assert elasticsearch_model_id("/tmp/models/tiny-clip-text") == "tmp__models__tiny-clip-text"
    assert elasticsearch_model_id("sentence-transformers/clip-ViT-B-32-multilingual-v1") == (
        "sentence-transformers__clip-vit-b-32-multilingual-v1"
    )


def test_http_errors_have_es_shape() -> None:
    from elasticsearch import ApiError, Elasticsearch

    with running_cluster(license="basic") as es:
        client = Elasticsearch(es.url)
        with pytest.raises(ApiError) as info:
            client.ml.put_trained_model(
                model_id="m", model_type="pytorch", inference_config={"text_embedding": {}}
            )
        assert info.value.meta.status == 403
        assert info.value.body["error"]["type"] == "security_exception"
        assert info.value.body["error"]["reason"] == "current license is non-compliant for [ml]"
        with pytest.raises(ApiError) as info:
            client.ml.get_trained_models(model_id="missing")
        assert info.value.meta.status == 404
        assert info.value.body["error"]["root_cause"][0]["type"] == "resource_not_found_exception"
        assert "total_ml_memory" in client.ml.info()["limits"]
