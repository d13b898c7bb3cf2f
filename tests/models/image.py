"""Image CLIP models built locally for tests and benchmarks (no hub downloads).

Both builders write a sentence-transformers model directory in the layout of the hub's
``clip-ViT-B-32``: ``modules.json`` naming one ``sentence_transformers.models.CLIPModel`` module whose
folder ``0_CLIPModel/`` holds a Hugging Face ``CLIPModel`` plus its ``CLIPProcessor`` (image processor
and a CLIP BPE tokenizer). ``SentenceTransformer(str(path))`` loads them offline.

- :func:`build_tiny_clip_model`: a tiny random CLIP (vision hidden 32, 2 layers) with projection dim
  64 (not 512, so dimension checks are exercised). The image processor is the real one's (shortest
  edge 224 bicubic, center crop 224, OpenAI CLIP mean/std), so preprocessing is the real thing.
- :func:`full_size_vit_b32`: the full ViT-B/32 architecture of ``openai/clip-vit-base-patch32``
  (vision hidden 768, 12 layers, patch 32, projection 512) with RANDOM weights: same compute as the
  real model, meaningless vectors. For benchmarks.
"""

from __future__ import annotations

import json
from pathlib import Path

# A tiny byte-level BPE vocabulary: every byte symbol alone and as a word end ("</w>"), a few merges,
# and CLIP's two special tokens. Enough for CLIPTokenizer to tokenize any text.
_MERGES = ["t h", "th e</w>", "a n", "an d</w>", "o f</w>", "c a", "ca t</w>", "d o", "do g</w>"]


def _byte_symbols() -> list[str]:
    # The printable stand-ins GPT-2/CLIP use for the 256 bytes (bytes_to_unicode), rebuilt here.
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    printable += list(range(ord("®"), ord("ÿ") + 1))
    symbols = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in symbols:
            symbols[b] = chr(256 + extra)
            extra += 1
    return [symbols[b] for b in range(256)]


def _write_tokenizer_files(folder: Path) -> tuple[Path, Path, int]:
    symbols = _byte_symbols()
    tokens = symbols + [s + "</w>" for s in symbols]
    for merge in _MERGES:
        merged = merge.replace(" ", "")
        if merged not in tokens:
            tokens.append(merged)
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    vocab = {token: i for i, token in enumerate(tokens)}
    vocab_file = folder / "vocab.json"
    merges_file = folder / "merges.txt"
    vocab_file.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    merges_file.write_text("#version: 0.2\n" + "\n".join(_MERGES) + "\n", encoding="utf-8")
    return vocab_file, merges_file, len(vocab)


def _save_sentence_transformers_clip(path: Path, config_kwargs: dict, seed: int) -> Path:
    import tempfile

    import torch
    from transformers import (
        CLIPConfig,
        CLIPImageProcessor,
        CLIPModel,
        CLIPProcessor,
        CLIPTokenizer,
        CLIPTokenizerFast,
    )

    path = Path(path)
    module_dir = path / "0_CLIPModel"
    module_dir.mkdir(parents=True, exist_ok=True)

    with tempfile.TemporaryDirectory() as tmp:
        vocab_file, merges_file, vocab_size = _write_tokenizer_files(Path(tmp))
        # model_max_length 77: CLIP's context, so long captions truncate like with the real model.
        slow = CLIPTokenizer(str(vocab_file), str(merges_file), model_max_length=77)
        # Saving the fast tokenizer too (tokenizer.json) spares every load a slow-to-fast conversion.
        slow.save_pretrained(tmp)
        tokenizer = CLIPTokenizerFast.from_pretrained(tmp)

    text_config = dict(config_kwargs.pop("text_config"))
    text_config["vocab_size"] = vocab_size
    text_config["bos_token_id"] = tokenizer.bos_token_id
    text_config["eos_token_id"] = tokenizer.eos_token_id
    text_config["pad_token_id"] = tokenizer.pad_token_id
    config = CLIPConfig(text_config=text_config, **config_kwargs)

    torch.manual_seed(seed)
    model = CLIPModel(config).eval()
    model.save_pretrained(module_dir, safe_serialization=True)

    # The processor settings of openai/clip-vit-base-patch32: shortest edge 224 (bicubic), crop 224,
    # OpenAI CLIP mean/std; the defaults of CLIPImageProcessor, spelled out so the files say it.
    image_size = config.vision_config.image_size
    image_processor = CLIPImageProcessor(
        size={"shortest_edge": image_size},
        crop_size={"height": image_size, "width": image_size},
        resample=3,
        image_mean=[0.48145466, 0.4578275, 0.40821073],
        image_std=[0.26862954, 0.26130258, 0.27577711],
    )
    CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(module_dir)

    (path / "modules.json").write_text(
        json.dumps(
            [{"idx": 0, "name": "0", "path": "0_CLIPModel", "type": "sentence_transformers.models.CLIPModel"}]
        )
    )
    (path / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {}, "default_prompt_name": None, "similarity_fn_name": "cosine"})
    )
    return path


def build_tiny_clip_model(path: Path, *, image_size: int = 224, seed: int = 0) -> Path:
    """Write a tiny random sentence-transformers CLIP model to ``path`` and return ``path``.

    Args:
        path: target directory (created).
        image_size: the vision tower's input size; the processor resizes/crops to it. 224 matches the
            real ViT-B/32 preprocessing.
        seed: torch seed for the random weights (same seed, same vectors).

    Example:
        >>> model_dir = build_tiny_clip_model(tmp_path / "clip")
        >>> SentenceTransformer(str(model_dir)).encode(pil_image).shape
        (64,)
    """
    config_kwargs = {
        "projection_dim": 64,
        "text_config": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 77,
        },
        "vision_config": {
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": image_size,
            "patch_size": 32,
        },
    }
    return _save_sentence_transformers_clip(Path(path), config_kwargs, seed)


def full_size_vit_b32(path: Path, *, seed: int = 0) -> Path:
    """Write ViT-B/32 CLIP (openai/clip-vit-base-patch32's architecture) with RANDOM weights to ``path``.

    Same compute as the real model (vision: hidden 768, 12 layers, 12 heads, patch 32, image 224;
    projection 512), so timings are real; the vectors mean nothing. The text tower is the real shape
    too except its vocabulary (the tiny local BPE one): image benchmarks never run it.

    Example:
        >>> model_dir = full_size_vit_b32(tmp_path / "vit-b-32")
    """
    config_kwargs = {
        "projection_dim": 512,
        "text_config": {
            "hidden_size": 512,
            "intermediate_size": 2048,
            "num_hidden_layers": 12,
            "num_attention_heads": 8,
            "max_position_embeddings": 77,
        },
        "vision_config": {
            "hidden_size": 768,
            "intermediate_size": 3072,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "image_size": 224,
            "patch_size": 32,
        },
    }
    return _save_sentence_transformers_clip(Path(path), config_kwargs, seed)
