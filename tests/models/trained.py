"""A tiny CLIP image tower and a tiny multilingual text model, trained on CPU in seconds to share a space.

The random tiny models (``text.py``, ``image.py``) share dimensions but no meaning. These two are
trained so that a caption embedded by the text model lands next to the images it describes:

- data: synthetic 64x64 images, a coloured shape (:data:`COLOURS` x :data:`SHAPES`, 12 labels such as
  ``red-circle``) of jittered size and position on one of :data:`BACKGROUNDS`; captions in English,
  German and Chinese (:func:`captions`, from :data:`TEMPLATES` and :data:`TRANSLATIONS`).
- image tower: the tiny CLIP of ``image.py`` (``_save_sentence_transformers_clip``: vision hidden 32,
  2 layers), at image size 32 (the 64x64 pictures resized), patch 8, projection 64; its images are
  preprocessed with the toolkit's own ``prepare``/``to_pixel_values`` (the processor config the model
  ships), so ingest sees what it was trained on.
- text model: the shape of ``clip-ViT-B-32-multilingual-v1`` as in ``text.py`` -- DistilBERT ->
  mean ``Pooling`` -> ``Dense`` (no bias, identity, 64 -> 64) -- with ``text.py``'s vocabulary plus the
  Chinese characters the captions need. DistilBERT's width equals the output width (64), so a trace
  that drops the Dense layer still has the index's dims but not its space (the test that proves the
  Dense layer matters relies on that).
- training: both towers are trained contrastively (softmax cross-entropy, temperature 0.05) against the
  same 12 fixed label anchors; each anchor is the normalized sum of a random colour vector and a random
  shape vector (seeded). Deterministic: fixed seeds, one thread.

``trained_pair()`` builds both once per test session (a ``functools.cache`` in a temp folder).

Example::

    from tests.models.trained import trained_pair, write_labeled_folder
    pair = trained_pair()
    pair.text_dir, pair.image_dir           # sentence-transformers model directories
    write_labeled_folder(tmp_path / "shapes", per_label=2, seed=1)   # shapes/red-circle/0.png ...
"""

from __future__ import annotations

import atexit
import functools
import json
import random
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.models.text import SPECIAL_TOKENS, _write_json, tiny_vocabulary

DIMS = 64
IMAGE_SIZE = 64
#: The vision tower's input (the processor resizes the 64x64 pictures to it): 16 patches of 8x8.
TOWER_SIZE = 32
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 30, 30), "green": (30, 170, 40), "blue": (30, 60, 220), "yellow": (235, 210, 30),
}
SHAPES = ("circle", "square", "triangle")
BACKGROUNDS: tuple[tuple[int, int, int], ...] = ((245, 245, 245), (40, 40, 40), (150, 150, 150))
LANGUAGES = ("en", "de", "zh")

#: Per-language prompt templates; the first one of each language is the eval default.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "en": ("a photo of a {label}", "a {label}", "an image of a {label}"),
    "de": ("ein Foto von einem {label}", "ein Bild von einem {label}", "{label}"),
    "zh": ("一张{label}的照片", "{label}", "一张{label}的图片"),
}
_COLOUR_WORDS = {
    "en": {"red": "red", "green": "green", "blue": "blue", "yellow": "yellow"},
    # dative after "von einem": roten / grünen / blauen / gelben (all three nouns take -en here)
    "de": {"red": "roten", "green": "grünen", "blue": "blauen", "yellow": "gelben"},
    "zh": {"red": "红色", "green": "绿色", "blue": "蓝色", "yellow": "黄色"},
}
_SHAPE_WORDS = {
    "en": {"circle": "circle", "square": "square", "triangle": "triangle"},
    "de": {"circle": "Kreis", "square": "Quadrat", "triangle": "Dreieck"},
    "zh": {"circle": "圆形", "square": "正方形", "triangle": "三角形"},
}


def labels() -> list[str]:
    """The 12 labels, ``colour-shape``: ``['red-circle', 'red-square', ...]``."""
    return [f"{c}-{s}" for c in COLOURS for s in SHAPES]


def translation(label: str, language: str) -> str:
    """The label's words in a language: ``translation("red-circle", "de") == "roten Kreis"``."""
    colour, shape = label.split("-")
    sep = "" if language == "zh" else " "
    return f"{_COLOUR_WORDS[language][colour]}{sep}{_SHAPE_WORDS[language][shape]}"


#: ``{label: {language: words}}``, the shape of eval's ``--labels`` YAML file.
TRANSLATIONS: dict[str, dict[str, str]] = {lab: {lang: translation(lab, lang) for lang in LANGUAGES}
                                           for lab in labels()}


def captions(label: str) -> list[str]:
    """Every training caption of a label (all templates, all languages)."""
    return [t.format(label=translation(label, lang)) for lang in LANGUAGES for t in TEMPLATES[lang]]


def draw(label: str, background: int, rng: random.Random) -> Any:
    """One synthetic PIL image: the label's shape in its colour on a background, place jittered."""
    from PIL import Image, ImageDraw

    colour, shape = label.split("-")
    image = Image.new("RGB", (IMAGE_SIZE, IMAGE_SIZE), BACKGROUNDS[background % len(BACKGROUNDS)])
    pen = ImageDraw.Draw(image)
    # One size, jittered place: a tiny tower trained for seconds tells the shapes apart by how much of
    # the picture they cover (square > circle > triangle) as much as by their outline.
    half = 18
    cx = IMAGE_SIZE // 2 + rng.randint(-8, 8)
    cy = IMAGE_SIZE // 2 + rng.randint(-8, 8)
    fill = tuple(max(0, min(255, v + rng.randint(-20, 20))) for v in COLOURS[colour])
    box = (cx - half, cy - half, cx + half, cy + half)
    if shape == "circle":
        pen.ellipse(box, fill=fill)
    elif shape == "square":
        pen.rectangle(box, fill=fill)
    else:
        pen.polygon([(cx, cy - half), (cx - half, cy + half), (cx + half, cy + half)], fill=fill)
    return image


def samples(per_label: int, seed: int) -> Iterator[tuple[str, Any]]:
    """``(label, image)`` pairs: ``per_label`` images per label, backgrounds cycling, seeded."""
    rng = random.Random(seed)
    for label in labels():
        for i in range(per_label):
            yield label, draw(label, i, rng)


def write_labeled_folder(folder: Path, *, per_label: int = 2, seed: int = 1) -> Path:
    """A folder per label of PNGs (``folder/red-circle/0.png``) plus ``manifest.csv`` (``id,path,label``)."""
    folder = Path(folder)
    rows = ["id,path,label"]
    counts: dict[str, int] = {}
    for label, image in samples(per_label, seed):
        n = counts.get(label, 0)
        counts[label] = n + 1
        (folder / label).mkdir(parents=True, exist_ok=True)
        image.save(folder / label / f"{n}.png")
        rows.append(f"{label}-{n},{label}/{n}.png,{label}")
    (folder / "manifest.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def write_translations(file: Path) -> Path:
    """The eval ``--labels`` YAML file: ``labels: {red-circle: {en: red circle, ...}}`` and ``templates``."""
    import yaml

    data = {"labels": TRANSLATIONS, "templates": {lang: list(t) for lang, t in TEMPLATES.items()}}
    file.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=True), encoding="utf-8")
    return file


def _anchors(seed: int) -> Any:
    import torch

    g = torch.Generator().manual_seed(seed)
    colour = torch.randn(len(COLOURS), DIMS, generator=g)
    shape = torch.randn(len(SHAPES), DIMS, generator=g)
    rows = [colour[i] + shape[j] for i in range(len(COLOURS)) for j in range(len(SHAPES))]
    return torch.nn.functional.normalize(torch.stack(rows), dim=-1)


def _contrastive(vectors: Any, targets: Any, anchors: Any) -> Any:
    import torch

    logits = torch.nn.functional.normalize(vectors, dim=-1) @ anchors.T / 0.05
    return torch.nn.functional.cross_entropy(logits, targets)


def build_image_tower(path: Path, anchors: Any, *, seed: int = 0, steps: int = 300) -> Path:
    """Write the tiny CLIP (image 32, patch 8, projection 64) trained to map images to ``anchors``."""
    import torch
    from transformers import CLIPModel

    from tests.models.image import _save_sentence_transformers_clip
    from toolkit.images.decode import ClipPreprocessing, prepare, to_pixel_values

    config_kwargs = {
        "projection_dim": DIMS,
        "text_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                        "num_attention_heads": 2, "max_position_embeddings": 77},
        "vision_config": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
                          "num_attention_heads": 2, "image_size": TOWER_SIZE, "patch_size": 8},
    }
    _save_sentence_transformers_clip(path, config_kwargs, seed)
    module_dir = path / "0_CLIPModel"
    preprocessing = ClipPreprocessing.from_config(
        json.loads((module_dir / "preprocessor_config.json").read_text(encoding="utf-8")))
    names = labels()
    data = list(samples(per_label=48, seed=seed + 100))
    pixels = to_pixel_values([prepare(image, preprocessing) for _, image in data], preprocessing)
    targets = torch.tensor([names.index(label) for label, _ in data])

    model = CLIPModel.from_pretrained(module_dir).train()
    params = list(model.vision_model.parameters()) + list(model.visual_projection.parameters())
    optimizer = torch.optim.Adam(params, lr=3e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = torch.randperm(len(data), generator=g)[:64]
        loss = _contrastive(model.get_image_features(pixel_values=pixels[batch]), targets[batch], anchors)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval().save_pretrained(module_dir, safe_serialization=True)
    return path


_EXTRA_CJK = "黄色圆形正方三角张图"


def _has_cjk(word: str) -> bool:
    return any("\u4e00" <= ch <= "\u9fff" for ch in word)


def build_text_model(path: Path, anchors: Any, *, seed: int = 0, steps: int = 80) -> Path:
    """Write the DistilBERT + mean pooling + Dense (64 -> 64) model trained to map captions to ``anchors``."""
    import torch
    from safetensors.torch import save_file
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = tiny_vocabulary()
    # Whole caption words too (a real multilingual vocabulary has them): short sequences train fast.
    words = {w for label in labels() for c in captions(label) for w in c.split() if not _has_cjk(w)}
    vocab += [t for t in [*_EXTRA_CJK, *sorted(words)] if t not in vocab]
    assert vocab[: len(SPECIAL_TOKENS)] == SPECIAL_TOKENS
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = DistilBertTokenizer(vocab_file=str(path / "vocab.txt"), do_lower_case=False,
                                    model_max_length=512)
    tokenizer.save_pretrained(str(path))

    torch.manual_seed(seed)
    config = DistilBertConfig(vocab_size=len(vocab), dim=DIMS, n_layers=2, n_heads=2, hidden_dim=128,
                              max_position_embeddings=512, pad_token_id=0, dropout=0.0,
                              attention_dropout=0.0)
    bert = DistilBertModel(config)
    dense = torch.nn.Linear(DIMS, DIMS, bias=False)

    names = labels()
    texts = [(names.index(label), caption) for label in names for caption in captions(label)]
    encoded = tokenizer([t for _, t in texts], padding=True, return_tensors="pt")
    targets = torch.tensor([i for i, _ in texts])
    optimizer = torch.optim.Adam(list(bert.parameters()) + list(dense.parameters()), lr=3e-3)
    bert.train()
    for _ in range(steps):
        hidden = bert(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).last_hidden_state
        mask = encoded["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)  # Pooling's mean over tokens
        loss = _contrastive(dense(pooled), targets, anchors)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    bert.eval().save_pretrained(str(path))

    _write_json(path / "sentence_bert_config.json", {"max_seq_length": 128, "do_lower_case": False})
    _write_json(path / "1_Pooling" / "config.json", {
        "word_embedding_dimension": DIMS, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False})
    _write_json(path / "2_Dense" / "config.json", {
        "in_features": DIMS, "out_features": DIMS, "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity"})
    save_file({"linear.weight": dense.weight.detach().contiguous()}, str(path / "2_Dense" / "model.safetensors"))
    _write_json(path / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
    ])
    _write_json(path / "config_sentence_transformers.json", {
        "__version__": {"sentence_transformers": "2.0.0"}, "prompts": {}, "default_prompt_name": None})
    return path


def without_dense(model_dir: Path, target: Path) -> Path:
    """A copy of the text model whose ``modules.json`` drops the Dense layer (what a bad trace would do)."""
    shutil.copytree(model_dir, target)
    modules = json.loads((target / "modules.json").read_text(encoding="utf-8"))
    _write_json(target / "modules.json", [m for m in modules if not m["type"].endswith(".Dense")])
    shutil.rmtree(target / "2_Dense")
    return target


@dataclass(frozen=True)
class TrainedPair:
    """The two trained model directories (sentence-transformers format) and where they live."""

    text_dir: Path
    image_dir: Path
    root: Path


@functools.cache
def trained_pair(seed: int = 0) -> TrainedPair:
    """Build (once per process) the image tower and text model trained to agree; returns their dirs."""
    import torch

    root = Path(tempfile.mkdtemp(prefix="toolkit-trained-"))
    atexit.register(shutil.rmtree, root, True)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # deterministic and polite on a shared machine
    try:
        anchors = _anchors(seed + 7)
        image_dir = build_image_tower(root / "clip", anchors, seed=seed)
        text_dir = build_text_model(root / "text", anchors, seed=seed)
    finally:
        torch.set_num_threads(threads)
    return TrainedPair(text_dir=text_dir, image_dir=image_dir, root=root)
