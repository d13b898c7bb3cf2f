"""Cold start of `toolkit search "x" --dry-run --show-request` against a script embedding the query locally.

The toolkit lets the cluster embed the text (``query_vector_builder``), so a text search starts without
torch. The baseline is what a naive client does instead: load the multilingual text model with
sentence-transformers and embed the query before searching. Each command runs in a fresh Python
process (``--runs`` times, median reported); the model files are in the page cache after the first
run, so both figures are warm-disk cold starts.

The baseline model is built locally with RANDOM weights (no download) in one of two sizes:

- ``--model full`` (default): the architecture of ``sentence-transformers/clip-ViT-B-32-multilingual-v1``:
  DistilBERT (dim 768, 6 layers, 12 heads, FFN 3072, vocabulary 119547, multilingual cased) + mean
  pooling + Dense 768 -> 512 without bias. About 135M parameters, 540 MB of safetensors; the same
  load and embed cost as the real model.
- ``--model tiny``: the tests' tiny model (2 layers, hidden 32): only the cost of importing torch,
  transformers and sentence-transformers.

Example::

    python benchmarks/search_cold_start.py --runs 5
    python benchmarks/search_cold_start.py --model tiny --json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
QUERY = "ein Hund spielt im Schnee"

NAIVE = """\
import sys
from sentence_transformers import SentenceTransformer
model = SentenceTransformer(sys.argv[1], device="cpu")
vector = model.encode(sys.argv[2])
print(len(vector))
"""


def build_full_model(path: Path) -> Path:
    """The multilingual DistilBERT sentence-transformers layout at full size, random weights."""
    import torch
    from safetensors.torch import save_file
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizer

    if (path / "modules.json").is_file():
        return path
    path.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # 119547 tokens like the real multilingual vocabulary (synthetic entries; sizes are what matter).
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = specials + list(letters) + ["##" + c for c in letters]
    i = 0
    while len(vocab) < 119547:
        vocab.append(f"w{i}")
        i += 1
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    DistilBertTokenizer(vocab_file=str(path / "vocab.txt"), do_lower_case=False,
                        model_max_length=512).save_pretrained(str(path))
    torch.manual_seed(0)
    config = DistilBertConfig(vocab_size=len(vocab), dim=768, n_layers=6, n_heads=12, hidden_dim=3072,
                              max_position_embeddings=512, pad_token_id=0)
    DistilBertModel(config).eval().save_pretrained(str(path))
    _json(path / "sentence_bert_config.json", {"max_seq_length": 128, "do_lower_case": False})
    _json(path / "1_Pooling" / "config.json", {
        "word_embedding_dimension": 768, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False})
    _json(path / "2_Dense" / "config.json", {"in_features": 768, "out_features": 512, "bias": False,
                                             "activation_function": "torch.nn.modules.linear.Identity"})
    save_file({"linear.weight": (torch.randn(512, 768) / 768**0.5).contiguous()},
              str(path / "2_Dense" / "model.safetensors"))
    _json(path / "modules.json", [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"}])
    return path


def _json(file: Path, data: object) -> None:
    file.parent.mkdir(parents=True, exist_ok=True)
    file.write_text(json.dumps(data, indent=2), encoding="utf-8")


def time_command(cmd: list[str], runs: int, env: dict[str, str]) -> list[float]:
    """Wall-clock seconds of ``runs`` fresh processes (a failing run aborts the benchmark)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
        times.append(time.perf_counter() - start)
        if proc.returncode != 0:
            raise SystemExit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    return times


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="fresh processes per command (median reported)")
    parser.add_argument("--model", choices=("full", "tiny"), default="full", help="baseline model size")
    parser.add_argument("--model-dir", type=Path, help="where to build/keep the baseline model "
                                                       "(default: a temp folder, removed afterwards)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = parser.parse_args(argv)

    env = {k: v for k, v in os.environ.items() if k not in ("ES_URL", "TOOLKIT_CONFIG")}
    env["HF_HUB_OFFLINE"] = "1"
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory(prefix="toolkit-bench-") as tmp:
        base = args.model_dir or Path(tmp)
        if args.model == "full":
            model_dir = build_full_model(base / "multilingual-distilbert-full")
        else:
            sys.path.insert(0, str(ROOT))
            from tests.models.text import build_tiny_text_model

            model_dir = build_tiny_text_model(base / "tiny-text")
        toolkit_cmd = [sys.executable, "-m", "toolkit", "search", QUERY, "--dry-run", "--show-request"]
        naive_cmd = [sys.executable, "-c", NAIVE, str(model_dir), QUERY]
        # One unmeasured run each so that both start from the page cache.
        time_command(toolkit_cmd, 1, env)
        time_command(naive_cmd, 1, env)
        toolkit_times = time_command(toolkit_cmd, args.runs, env)
        naive_times = time_command(naive_cmd, args.runs, env)

    toolkit_s, naive_s = statistics.median(toolkit_times), statistics.median(naive_times)
    result = {"runs": args.runs, "model": args.model, "toolkit_search_s": round(toolkit_s, 3),
              "naive_local_embedding_s": round(naive_s, 3), "ratio": round(naive_s / toolkit_s, 1),
              "toolkit_times_s": [round(t, 3) for t in toolkit_times],
              "naive_times_s": [round(t, 3) for t in naive_times], "cpus": os.cpu_count()}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"toolkit search \"...\" --dry-run --show-request : {toolkit_s:6.2f} s (median of {args.runs})")
        print(f"naive script, local {args.model} text model    : {naive_s:6.2f} s (median of {args.runs})")
        print(f"the toolkit starts {naive_s / toolkit_s:.1f}x faster")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
