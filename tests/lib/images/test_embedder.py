"""The image embedder and the decode/embed pipeline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.lib.images.conftest import cosine
from toolkit.errors import ImageError, ModelError
from toolkit.images.embedder import ClipImageEmbedder, ImageEmbedder, embed_paths


class CountingEmbedder(ImageEmbedder):
    """Fake: the vector is the mean colour of the 224x224 crop (so each image is recognizable)."""

    dims = 3

    def __init__(self, batch_size: int = 4) -> None:
        self.batch_size = batch_size
        self.batches: list[int] = []

    def embed_batch(self, pixel_values):
        self.batches.append(int(pixel_values.shape[0]))
        return pixel_values.mean(dim=(2, 3)).numpy()


def _solid_images(folder: Path, count: int) -> list[Path]:
    paths = []
    for i in range(count):
        path = folder / f"{i:03d}.png"
        Image.new("RGB", (300, 240), (i * 7 % 256, 100, 200)).save(path)
        paths.append(path)
    return paths


def _red_channel(vector: np.ndarray) -> int:
    # Undo the CLIP normalization of the red channel to read back the solid colour.
    return round((float(vector[0]) * 0.26862954 + 0.48145466) * 255)


def test_dims_is_the_model_output_size(embedder, reference_model):
    assert embedder.dims == 64 == reference_model.encode(Image.new("RGB", (64, 64))).shape[0]


def test_vectors_equal_sentence_transformers_encode(embedder, reference_model, photo_paths):
    from PIL import ImageOps

    from toolkit.images.decode import load_image

    images = [ImageOps.exif_transpose(Image.open(path)) for path in photo_paths]
    reference = reference_model.encode(images)
    ours = np.stack(list(embedder.embed(load_image(path, draft=False) for path in photo_paths)))
    assert ours.dtype == np.float32 and ours.shape == reference.shape
    assert np.abs(ours - reference).max() < 1e-4
    assert all(cosine(a, b) >= 0.9999 for a, b in zip(ours, reference, strict=True))


def test_fast_path_on_real_photos_is_close_to_the_reference(embedder, reference_vector, photo_paths):
    results = dict(embed_paths(photo_paths, embedder))
    cosines = {path.stem: cosine(results[path], reference_vector(path)) for path in photo_paths}
    assert min(cosines.values()) >= 0.995, cosines


def test_bf16_is_close_to_fp32(tiny_clip_dir, embedder, photo_paths):
    bf16 = ClipImageEmbedder(str(tiny_clip_dir), precision="bf16")
    fp32 = dict(embed_paths(photo_paths, embedder))
    for path, vector in embed_paths(photo_paths, bf16):
        assert vector.dtype == np.float32
        assert cosine(vector, fp32[path]) >= 0.999


def test_bad_settings_are_model_errors(tiny_clip_dir, tmp_path):
    with pytest.raises(ModelError, match="precision"):
        ClipImageEmbedder(str(tiny_clip_dir), precision="fp8")
    with pytest.raises(ModelError, match="cannot load image model"):
        ClipImageEmbedder(str(tmp_path / "no-such-model"))


def test_embed_batches_as_configured(tmp_path):
    fake = CountingEmbedder(batch_size=4)
    images = [Image.open(path) for path in _solid_images(tmp_path, 10)]
    vectors = list(fake.embed(images))
    assert len(vectors) == 10
    assert fake.batches == [4, 4, 2]


def test_embed_paths_keeps_order_and_reports_errors_per_item(tmp_path):
    paths = _solid_images(tmp_path, 12)
    (tmp_path / "broken.jpg").write_text("not an image")
    (tmp_path / "empty.png").write_bytes(b"")
    items = paths[:3] + [tmp_path / "broken.jpg"] + paths[3:9] + [tmp_path / "empty.png"] + paths[9:]
    fake = CountingEmbedder(batch_size=4)

    results = list(embed_paths(items, fake, workers=3, prefetch=5))

    assert [item for item, _ in results] == items
    errors = {item.name: result for item, result in results if isinstance(result, ImageError)}
    assert set(errors) == {"broken.jpg", "empty.png"}
    assert errors["broken.jpg"].path == str(tmp_path / "broken.jpg")
    assert errors["broken.jpg"].reason == "not an image (unrecognized file format)"
    assert errors["empty.png"].reason == "empty file (0 bytes)"
    colours = [_red_channel(result) for _, result in results if not isinstance(result, ImageError)]
    assert colours == [i * 7 % 256 for i in range(12)]
    assert fake.batches == [4, 4, 4]


def test_embed_paths_with_only_broken_items_never_calls_the_model(tmp_path):
    (tmp_path / "a.jpg").write_text("text")
    fake = CountingEmbedder()
    results = list(embed_paths([tmp_path / "a.jpg", tmp_path / "missing.jpg"], fake))
    assert [type(result) for _, result in results] == [ImageError, ImageError]
    assert fake.batches == []


def test_embed_paths_takes_sources_from_items_and_bytes(tmp_path):
    paths = _solid_images(tmp_path, 3)
    items = [{"id": i, "data": path.read_bytes()} for i, path in enumerate(paths)]
    results = list(embed_paths(items, CountingEmbedder(), source=lambda item: item["data"]))
    assert [item["id"] for item, _ in results] == [0, 1, 2]
    assert [_red_channel(vector) for _, vector in results] == [0, 7, 14]


def test_embed_paths_reads_ahead_a_bounded_number_of_items(tmp_path):
    path = _solid_images(tmp_path, 1)[0]
    pulled = 0

    def endless():
        nonlocal pulled
        while True:
            pulled += 1
            yield path

    fake = CountingEmbedder(batch_size=4)
    stream = embed_paths(endless(), fake, workers=2, prefetch=6)
    for _ in range(20):
        next(stream)
    stream.close()
    # Memory stays flat: never more than one batch plus the prefetch window ahead of the consumer.
    assert pulled <= 20 + 4 + 6


@pytest.mark.parametrize("pause", [True, False])
def test_decoding_pauses_while_the_model_runs_on_cpu(tmp_path, pause):
    import threading
    import time

    paths = _solid_images(tmp_path, 24)
    lock = threading.Lock()
    state = {"in_model": False, "decodes_during_model": 0}

    class SlowEmbedder(CountingEmbedder):
        def embed_batch(self, pixel_values):
            with lock:
                state["in_model"] = True
            time.sleep(0.1)  # long enough for free decode threads to start the items in flight
            with lock:
                state["in_model"] = False
            return super().embed_batch(pixel_values)

    def source(path):
        with lock:
            state["decodes_during_model"] += state["in_model"]
        time.sleep(0.03)  # a slow decode, so overlapped decodes do land inside the model call
        return path

    results = list(embed_paths(paths, SlowEmbedder(batch_size=3), workers=2, prefetch=4, source=source,
                               pause_decode=pause))
    assert [item for item, _ in results] == paths
    if pause:
        # 0 in practice; a decode that passed the gate just as it closed could slip through.
        assert state["decodes_during_model"] <= 2
    else:
        assert state["decodes_during_model"] >= 5  # about 10 in practice
