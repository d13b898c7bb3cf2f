"""The trained tiny models share a space through the whole path: deploy (eland trace, upload, start)
into the test cluster, ingest the labeled shapes, search with ``query_vector_builder``.

``trained_env()`` is built once per session and reused by the eval tests.
"""

from __future__ import annotations

import atexit
import functools
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.models.trained import LANGUAGES, TEMPLATES, labels, trained_pair, translation, without_dense
from toolkit.cluster import make_client
from toolkit.search import SearchOptions, run, text_query
from toolkit.settings import Settings, load_settings

MODEL_ID = "trained-text"


@dataclass
class TrainedEnv:
    url: str
    settings: Settings
    folder: Path
    handle: object

    @property
    def client(self):
        return make_client(self.settings)


def trained_config(url: str, *, model_id: str = MODEL_ID, text_dir: Path | None = None) -> dict[str, object]:
    pair = trained_pair()
    return {"elasticsearch.url": url, "text_model.hub_id": str(text_dir or pair.text_dir),
            "text_model.model_id": model_id, "image_model.name": str(pair.image_dir),
            "image_model.device": "cpu", "index.image_dims": 64, "index.caption_dims": 64}


@functools.cache
def trained_env() -> TrainedEnv:
    """A trial test cluster with the trained text model deployed (parity checked), set up, and 3 shapes
    per label (36 images, ``manifest.csv`` with ``label``) ingested."""
    from tests.escluster.testing import start_cluster
    from tests.models.trained import write_labeled_folder
    from toolkit import provision
    from toolkit.images.sources import open_source
    from toolkit.ingest import ingest
    from toolkit.textmodel import deploy

    handle = start_cluster(license="trial")
    atexit.register(handle.stop)
    settings = load_settings(environ={}, overrides=trained_config(handle.url))
    client = make_client(settings)
    report = deploy(client, settings)
    assert report.parity is not None and report.parity.min_cosine > 0.9999
    provision.setup(client, settings)
    folder = write_labeled_folder(Path(tempfile.mkdtemp(prefix="toolkit-shapes-")) / "shapes", per_label=3, seed=1)
    done = ingest(client, settings, source=open_source(folder / "manifest.csv"),
                  failures_file=folder.parent / "failures.jsonl")
    assert done.indexed == 36 and done.failed == 0
    return TrainedEnv(handle.url, settings, folder, handle)


@pytest.fixture(scope="module")
def env() -> TrainedEnv:
    return trained_env()


def recall_at_1(client, settings: Settings, language: str, templates: int = 3) -> float:
    """Share of the language's prompts (``templates`` templates x label) whose first hit has the prompt's label."""
    found = total = 0
    for label in labels():
        for template in TEMPLATES[language][:templates]:
            prompt = template.format(label=translation(label, language))
            hits = run(client, text_query(prompt, settings, SearchOptions(k=1))).hits
            total += 1
            found += bool(hits) and hits[0].source.get("label") == label
    return found / total


@pytest.mark.parametrize("language", LANGUAGES)
def test_text_finds_its_images_in_each_language_through_the_cluster(env, language):
    assert recall_at_1(env.client, env.settings, language) >= 0.9


def test_a_trace_without_the_dense_layer_no_longer_shares_the_image_space(env, tmp_path):
    """Same dims (DistilBERT is 64 wide), so everything runs: only the meaning is lost."""
    from toolkit.textmodel import deploy

    broken = without_dense(trained_pair().text_dir, tmp_path / "no-dense")
    settings = load_settings(environ={}, overrides=trained_config(env.url, model_id="trained-no-dense",
                                                                  text_dir=broken))
    deploy(env.client, settings, skip_parity=True)
    assert max(recall_at_1(env.client, settings, lang, templates=1) for lang in LANGUAGES) < 0.5
