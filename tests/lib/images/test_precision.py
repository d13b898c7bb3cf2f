"""Precision: what ``auto`` tries on which machine, how it chooses, and the parity guard (fallback/strict).

The selection logic is tested with fakes (measurements, device facts); the guard with the tiny CLIP
model, whose int8 vectors differ slightly from fp32, so a threshold of 1.0 is one no precision meets.
No test here times anything: rates are given, never measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from toolkit.errors import ModelError, ParityError
from toolkit.images import embedder as emb
from toolkit.images.embedder import ClipImageEmbedder, PrecisionChoice, choose_precision, precision_candidates

THRESHOLDS = {"bf16": 0.999, "fp16": 0.999, "int8": 0.995}


def measured(**rates_and_cosines: tuple[float, float | None]) -> dict[str, dict[str, float | None]]:
    return {p: {"images_per_second": rate, "min_cosine": cos} for p, (rate, cos) in rates_and_cosines.items()}


# ------------------------------------------------------------------------------------------- candidates

@pytest.mark.parametrize(("device", "facts", "expected"), [
    ("cpu", {"cpu_bf16": False, "cuda_bf16": False, "int8_engine": True}, ["int8"]),        # AVX2 only
    ("cpu", {"cpu_bf16": True, "cuda_bf16": False, "int8_engine": True}, ["int8", "bf16"]),  # AVX512-BF16
    ("cpu", {"cpu_bf16": False, "cuda_bf16": False, "int8_engine": False}, []),
    ("cuda", {"cpu_bf16": False, "cuda_bf16": True, "int8_engine": True}, ["fp16", "bf16"]),
    ("cuda:1", {"cpu_bf16": True, "cuda_bf16": False, "int8_engine": True}, ["fp16"]),
])
def test_auto_tries_only_what_the_device_runs_natively(device: str, facts: dict[str, bool],
                                                       expected: list[str]) -> None:
    assert precision_candidates(device, **facts) == expected


def test_emulated_bf16_is_not_a_candidate_on_a_cpu_without_bf16_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    # oneDNN says "bf16 supported" on AVX-512 CPUs without AVX512-BF16, where it is emulated and slow.
    monkeypatch.setattr(emb, "cpu_flags", lambda: {"avx2", "avx512f", "avx512_vnni"})
    monkeypatch.setattr(emb, "_cpu_has_fast_bf16", lambda: True)
    assert emb._cpu_has_native_bf16() is False
    monkeypatch.setattr(emb, "cpu_flags", lambda: {"avx2", "avx512_bf16"})
    assert emb._cpu_has_native_bf16() is True


# -------------------------------------------------------------------------------------------- choosing

def test_auto_picks_the_fastest_precision_that_passes_the_guard() -> None:
    m = measured(fp32=(18.8, None), int8=(96.0, 0.9997), bf16=(62.0, 0.99994))
    used, fell_back, reason = choose_precision("auto", m, THRESHOLDS)
    assert (used, fell_back) == ("int8", False)
    assert "int8" in reason and "5.1x" in reason


def test_auto_skips_a_faster_precision_whose_vectors_disagree() -> None:
    m = measured(fp32=(18.8, None), int8=(96.0, 0.97), bf16=(62.0, 0.99994))
    used, fell_back, _ = choose_precision("auto", m, THRESHOLDS)
    assert (used, fell_back) == ("bf16", False)


def test_auto_keeps_fp32_when_nothing_is_faster_enough_and_says_why() -> None:
    # AVX2-only: "no slower than fp32" means fp32 when int8 does not beat it.
    m = measured(fp32=(14.6, None), int8=(15.0, 0.999))
    used, fell_back, reason = choose_precision("auto", m, THRESHOLDS)
    assert (used, fell_back) == ("fp32", False)
    assert "int8 not faster" in reason


def test_nan_agreement_never_passes() -> None:
    used, fell_back, reason = choose_precision("int8", measured(fp32=(1.0, None), int8=(9.0, float("nan"))),
                                               THRESHOLDS)
    assert (used, fell_back) == ("fp32", True) and "nan" in reason


def test_explicit_precision_falls_back_below_its_threshold() -> None:
    m = measured(fp32=(0.0, None), bf16=(0.0, 0.9985))
    assert choose_precision("bf16", m, THRESHOLDS) == \
        ("fp32", True, "bf16 min cosine 0.9985 < 0.999 on the first batch")
    assert choose_precision("bf16", m, {**THRESHOLDS, "bf16": 0.998})[:2] == ("bf16", False)


def test_the_choice_describes_itself_for_the_summary() -> None:
    choice = PrecisionChoice(requested="auto", used="int8", device="cpu", thresholds={"int8": 0.995},
                             measured=measured(fp32=(10.0, None), int8=(30.0, 0.9991)))
    assert choice.describe() == "precision int8 (auto; min cosine 0.9991 vs fp32; 3.0x fp32)"
    assert choice.as_json()["min_cosine"] == 0.9991
    fell = PrecisionChoice(requested="int8", used="fp32", device="cpu", thresholds={"int8": 1.0},
                           fell_back=True, reason="int8 min cosine 0.9990 < 1.0 on the first batch")
    assert fell.describe() == "precision fp32 (fell back from int8: int8 min cosine 0.9990 < 1.0 on the first batch)"


# ---------------------------------------------------------------------------------- the guard, for real

@pytest.fixture(scope="module")
def batch() -> torch.Tensor:
    return torch.randn(4, 3, 224, 224, generator=torch.Generator().manual_seed(0))


def test_int8_passes_the_default_guard_and_runs_int8(tiny_clip_dir: Path, batch: torch.Tensor) -> None:
    embedder = ClipImageEmbedder(str(tiny_clip_dir), device="cpu", precision="int8", batch_size=4)
    first = embedder.embed_batch(batch)
    assert embedder.choice is not None and embedder.choice.used == "int8" and not embedder.choice.fell_back
    assert embedder.choice.min_cosine is not None and 0.995 <= embedder.choice.min_cosine < 1.0
    # Later batches run the quantized model: the same vectors as the first batch's int8 ones.
    np.testing.assert_allclose(embedder.embed_batch(batch), first, atol=1e-5)
    # The fp32 model keeps its text tower (left out of the quantized copy only).
    assert embedder.model[0].model.text_model is not None
    assert embedder._int8()[0].model.text_model is None


def test_a_threshold_no_precision_meets_falls_back_to_fp32(tiny_clip_dir: Path, batch: torch.Tensor,
                                                           reference_model: Any) -> None:
    seen: list[PrecisionChoice] = []
    embedder = ClipImageEmbedder(str(tiny_clip_dir), device="cpu", precision="int8", min_cosine={"int8": 1.0},
                                 batch_size=4)
    embedder.on_choice = seen.append
    vectors = embedder.embed_batch(batch)
    assert embedder.choice is not None and embedder.choice.used == "fp32" and embedder.choice.fell_back
    assert "int8 min cosine" in embedder.choice.reason and "< 1.0" in embedder.choice.reason
    assert seen == [embedder.choice]  # told once, when decided
    fp32 = ClipImageEmbedder(str(tiny_clip_dir), device="cpu", precision="fp32", batch_size=4)
    np.testing.assert_allclose(vectors, fp32.embed_batch(batch), atol=1e-6)  # fp32 vectors from the start
    np.testing.assert_allclose(embedder.embed_batch(batch), vectors, atol=1e-6)


def test_strict_stops_instead_of_falling_back(tiny_clip_dir: Path, batch: torch.Tensor) -> None:
    embedder = ClipImageEmbedder(str(tiny_clip_dir), device="cpu", precision="int8", strict=True,
                                 min_cosine={"int8": 1.0}, batch_size=4)
    with pytest.raises(ParityError) as stopped:
        embedder.embed_batch(batch)
    assert "int8 disagrees with fp32" in stopped.value.message and "--strict" in stopped.value.message
    assert "image_model.min_cosine.int8" in (stopped.value.hint or "")


def test_auto_never_falls_back_and_records_what_it_measured(tiny_clip_dir: Path, batch: torch.Tensor,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ClipImageEmbedder, "candidates", lambda self: ["int8"])
    embedder = ClipImageEmbedder(str(tiny_clip_dir), device="cpu", batch_size=4)  # default: auto
    assert embedder.precision == "auto"
    embedder.embed_batch(batch)
    choice = embedder.choice
    assert choice is not None and choice.requested == "auto" and not choice.fell_back
    assert choice.used in ("int8", "fp32")
    assert set(choice.measured) == {"fp32", "int8"}
    assert all(m["images_per_second"] for m in choice.measured.values())
    assert choice.measured["int8"]["min_cosine"] is not None


def test_precision_options_that_cannot_work_are_refused_with_the_fix(tiny_clip_dir: Path) -> None:
    with pytest.raises(ModelError, match="fp16 needs a CUDA GPU") as fp16:
        ClipImageEmbedder(str(tiny_clip_dir), device="cpu", precision="fp16")
    assert "--precision auto" in (fp16.value.hint or "")
    with pytest.raises(ModelError, match="--strict applies to an explicit reduced precision"):
        ClipImageEmbedder(str(tiny_clip_dir), device="cpu", precision="auto", strict=True)
    with pytest.raises(ModelError, match="unknown precision 'fp8'") as bad:
        ClipImageEmbedder(str(tiny_clip_dir), device="cpu", precision="fp8")
    assert "auto | int8 | bf16 | fp16 | fp32" in (bad.value.hint or "")


def test_cuda_autocast_uses_the_chosen_dtype(tiny_clip_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # No GPU here: the autocast context the CUDA path would enter, checked without running it.
    embedder = ClipImageEmbedder(str(tiny_clip_dir), device="cpu", precision="fp32")
    embedder.device = "cuda"
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(torch, "autocast", lambda **kw: calls.append(kw) or _Null())
    embedder._autocast("fp16")
    embedder._autocast("bf16")
    assert embedder._autocast("fp32").__class__.__name__ == "nullcontext"
    assert calls == [{"device_type": "cuda", "dtype": torch.float16}, {"device_type": "cuda", "dtype": torch.bfloat16}]


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_int8_on_a_gpu_is_refused_before_the_model_loads(tiny_clip_dir: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(emb, "_resolve_device", lambda device: "cuda")
    monkeypatch.setattr(emb, "_load_sentence_transformer", lambda *a: pytest.fail("model loaded"))
    with pytest.raises(ModelError, match="int8 runs on the CPU only") as refused:
        ClipImageEmbedder(str(tiny_clip_dir), device="cuda", precision="int8")
    assert "--device cpu" in (refused.value.hint or "")


@pytest.mark.parametrize(("key", "value"), [
    ("image_model.precision", "fp8"),
    ("image_model.min_cosine.int8", 1.5),
    ("image_model.min_cosine.bf16", "nan"),
])
def test_bad_precision_settings_are_config_errors(key: str, value: Any) -> None:
    from toolkit.errors import ConfigError
    from toolkit.settings import load_settings

    with pytest.raises(ConfigError) as bad:
        load_settings(overrides={key: value}, environ={}, cwd=Path("/nonexistent-toolkit-test-dir"))
    assert key.split(".")[-1] in bad.value.message
