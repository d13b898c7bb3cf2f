"""A tiny multilingual sentence-transformers text model, built locally (no hub, no download).

It has the shape of ``sentence-transformers/clip-ViT-B-32-multilingual-v1`` -- a DistilBERT
``Transformer`` (cased WordPiece, ``max_seq_length`` 128) -> mean ``Pooling`` -> ``Dense`` without bias
and with an identity activation (768 -> 512 in the real model, 32 -> 512 here) and no ``Normalize`` --
but with random weights, so that it builds in well under a second and eland can trace it.

Example::

    from tests.models.text import build_tiny_text_model
    path = build_tiny_text_model(tmp_path / "tiny-clip-text")
    SentenceTransformer(str(path)).encode("a dog in the snow").shape  # (512,)
"""

from __future__ import annotations

import json
from pathlib import Path

HIDDEN = 32
EMBEDDING_DIMS = 512
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

_WORDS = (
    "a an the dog dogs cat cats in on of and with snow beach palm tree trees red blue green photo picture "
    "man woman child city street car house sea sky sun mountain river flower flowers is are playing running "
    "Eine Katze Hund Schnee Strand mit Palmen über schön Straße Bäume grün Mädchen Übung "
    "un una el la perro playa con palmeras gato nieve chien neige plage "
    "собака кошка снег пляж с пальмами в на и красный дом город "
    "كلب قطة ثلج شاطئ "
    "ねこ いぬ ゆき うみ カメラ ネコ"
)
_PIECES = ("s es ed ing er ly en ern ung chen", "ы и а ой ом ами")
_CJK = "猫狗雪海滩棕榈树的在和一只人城市街道汽车房子天空太阳山河花红蓝绿照片图中日本東京犬写真"
_ALPHABETS = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    "äöüÄÖÜßéèêàçñáíóúâô"
    "абвгдеёжзийклмнопрстуфхцчшщъыьэюяАБВГДЕЁЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯ"
    "ابتثجحخدذرزسشصضطظعغفقكلمنهوي"
    "あいうえおかきくけこさしすせそたちつてとなにぬねのはひふへほまみむめもやゆよらりるれろわをん"
    "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲン"
)
_PUNCT = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~¡¿«»“”‘’—–…。、！？「」・"
_DIGITS = "0123456789"


def tiny_vocabulary() -> list[str]:
    """The WordPiece vocabulary of the tiny model, tokens in id order (ids start at 0 with ``[PAD]``).

    Every letter of the covered scripts exists both as a word start and as a ``##`` continuation, so no
    word in Latin, Cyrillic, Arabic or kana ever becomes ``[UNK]``; whole words and a few suffixes make
    WordPiece's longest-match-first choice visible.

    Example::

        vocab = tiny_vocabulary()
        vocab[:5]  # ['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]']
    """
    tokens: list[str] = list(SPECIAL_TOKENS)
    tokens += list(_PUNCT) + list(_DIGITS) + ["##" + d for d in _DIGITS]
    tokens += _WORDS.split()
    for group in _PIECES:
        tokens += ["##" + p for p in group.split()]
    tokens += list(_CJK)
    tokens += list(_ALPHABETS) + ["##" + ch for ch in _ALPHABETS]
    seen: set[str] = set()
    unique = []
    for token in tokens:
        if token not in seen:
            seen.add(token)
            unique.append(token)
    return unique


def build_tiny_text_model(
    path: Path,
    *,
    dense: bool = True,
    max_seq_length: int = 128,
    normalize: bool = False,
    seed: int = 0,
) -> Path:
    """Write a tiny sentence-transformers model directory at ``path`` and return ``path``.

    Args:
        path: the directory to create (parents too); existing files in it are overwritten.
        dense: keep the ``Dense`` 32 -> 512 layer; ``False`` gives a deliberately different model
            (32-dimensional output) for parity tests that must fail.
        max_seq_length: ``sentence_bert_config.json`` ``max_seq_length`` (the real model uses 128).
        normalize: append a ``Normalize`` module (the real model has none).
        seed: seed of the random weights; the same seed gives the same model.

    Example::

        model_dir = build_tiny_text_model(tmp_path / "tiny", seed=1)
    """
    import torch
    from safetensors.torch import save_file
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizer

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    vocab = tiny_vocabulary()
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    tokenizer = DistilBertTokenizer(
        vocab_file=str(path / "vocab.txt"), do_lower_case=False, model_max_length=512
    )
    tokenizer.save_pretrained(str(path))

    torch.manual_seed(seed)
    config = DistilBertConfig(
        vocab_size=len(vocab),
        dim=HIDDEN,
        n_layers=2,
        n_heads=2,
        hidden_dim=64,
        max_position_embeddings=512,
        pad_token_id=0,
    )
    model = DistilBertModel(config).eval()
    # A wider spread than HF's 0.02 default so that embeddings of different texts differ clearly.
    with torch.no_grad():
        model.embeddings.word_embeddings.weight.normal_(0.0, 0.5)
    model.save_pretrained(str(path))

    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    _write_json(
        path / "sentence_bert_config.json", {"max_seq_length": max_seq_length, "do_lower_case": False}
    )
    _write_json(
        path / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": HIDDEN,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
        },
    )
    if dense:
        modules.append(
            {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}
        )
        # Same layer as the real model's 2_Dense: no bias, identity activation.
        _write_json(
            path / "2_Dense" / "config.json",
            {
                "in_features": HIDDEN,
                "out_features": EMBEDDING_DIMS,
                "bias": False,
                "activation_function": "torch.nn.modules.linear.Identity",
            },
        )
        generator = torch.Generator().manual_seed(seed + 1)
        weight = torch.randn(EMBEDDING_DIMS, HIDDEN, generator=generator) / HIDDEN**0.5
        save_file({"linear.weight": weight.contiguous()}, str(path / "2_Dense" / "model.safetensors"))
    if normalize:
        modules.append(
            {
                "idx": len(modules),
                "name": str(len(modules)),
                "path": f"{len(modules)}_Normalize",
                "type": "sentence_transformers.models.Normalize",
            }
        )
        (path / f"{len(modules) - 1}_Normalize").mkdir(exist_ok=True)
    _write_json(path / "modules.json", modules)
    _write_json(
        path / "config_sentence_transformers.json",
        {
            "__version__": {"sentence_transformers": "2.0.0"},
            "prompts": {},
            "default_prompt_name": None,
        },
    )
    return path


def _write_json(file: Path, data: object) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")
