"""The parity proof: the deployed model embeds like the local sentence-transformers model.

Fixed probe sentences in several languages and scripts (plus one longer than the maximum sequence
length, to prove truncation agrees) are embedded by ``_infer`` in the cluster and by
sentence-transformers locally; the command fails unless every cosine is >= 0.9999 and the dims agree
with each other and with the index template.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from toolkit.devtools import send
from toolkit.errors import ParityError
from toolkit.textmodel.requests import infer_request

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

MIN_COSINE = 0.9999
Probes = Sequence[tuple[str, str]]

# (language, text). Kept short and everyday; the long one exceeds 128 tokens on purpose.
PROBES: tuple[tuple[str, str], ...] = (
    ("en", "a dog running on the beach"),
    ("zh", "雪中的一只狗"),
    ("de", "Eine Katze im Schnee"),
    ("ru", "красный дом в городе"),
    ("ar", "كلب على شاطئ"),
    ("ja", "東京の写真"),
    ("es", "un perro en la playa con palmeras"),
    ("fr", "un chien dans la neige"),
    ("en-long", " ".join(["a red car in the city street and a blue house with green trees"] * 14)),
)


@dataclass(frozen=True)
class ProbeResult:
    language: str
    text: str
    cosine: float
    max_abs_diff: float


@dataclass(frozen=True)
class ParityReport:
    """What parity found. ``passed`` is False when ``problems`` is not empty."""

    min_cosine: float
    max_abs_diff: float
    dims: int
    local_dims: int
    cluster_dims: int
    template_dims: int | None
    probes: list[ProbeResult] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    def as_json(self) -> dict[str, Any]:
        """Stable keys for ``--json``."""
        return {
            "min_cosine": self.min_cosine, "max_abs_diff": self.max_abs_diff, "dims": self.dims,
            "local_dims": self.local_dims, "cluster_dims": self.cluster_dims,
            "template_dims": self.template_dims, "passed": self.passed,
            "probes": [asdict(p) for p in self.probes],
        }


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(y * y for y in b))
    if na == 0 or nb == 0:
        return 0.0
    return dot / (na * nb)


def cluster_embeddings(client: Elasticsearch, deployment_id: str, texts: list[str]) -> list[list[float]]:
    """Embed texts with ``POST _ml/trained_models/<deployment>/_infer``."""
    body = send(client, infer_request(deployment_id, texts), doing=f"running {deployment_id} in the cluster")
    results = body.get("inference_results") or []
    out = []
    for result in results:
        value = result.get("predicted_value")
        if not isinstance(value, list):
            raise ParityError(f"the cluster returned no embedding: {result}",
                              hint="check the deployment with GET _ml/trained_models/<id>/_stats")
        out.append([float(x) for x in value])
    return out


def local_embeddings(model_dir: str | Path, texts: list[str]) -> list[list[float]]:
    """Embed texts with sentence-transformers on the CPU, exactly as a user would locally."""
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    vectors = model.encode(texts, convert_to_numpy=True, normalize_embeddings=False, batch_size=16)
    return [[float(x) for x in row] for row in vectors]


def compare(cluster: list[list[float]], local: list[list[float]], probes: Probes, *,
            template_dims: int | None, min_cosine: float = MIN_COSINE) -> ParityReport:
    """Compare two sets of embeddings probe by probe; the report lists every problem found (pure).

    Example::

        compare([[1.0, 0.0]], [[1.0, 0.0]], [("en", "x")], template_dims=2).passed   # True
    """
    cluster_dims = len(cluster[0]) if cluster else 0
    local_dims = len(local[0]) if local else 0
    problems: list[str] = []
    results: list[ProbeResult] = []
    if cluster_dims != local_dims:
        hint = ""
        if cluster_dims < local_dims:
            hint = " (is a Dense projection layer missing from the deployed model?)"
        elif cluster_dims > local_dims:
            hint = " (is the local model missing a Dense projection layer?)"
        problems.append(f"dims differ: the cluster returns {cluster_dims} dims but the local model "
                        f"{local_dims}{hint}")
    else:
        for (lang, text), c, v in zip(probes, cluster, local, strict=True):
            results.append(ProbeResult(language=lang, text=text, cosine=_cosine(c, v),
                                       max_abs_diff=max((abs(x - y) for x, y in zip(c, v, strict=True)),
                                                        default=0.0)))
    if template_dims is not None and cluster_dims != template_dims:
        problems.append(f"the index template maps the caption vector with {template_dims} dims but the "
                        f"deployed model returns {cluster_dims}")
    # NaN (an embedding of NaNs) must fail, and compares False both ways: test for "not good enough".
    failing = [r for r in results if not r.cosine >= min_cosine]
    nans = [r for r in results if math.isnan(r.cosine)]
    low = float("nan") if nans else min((r.cosine for r in results), default=float("nan"))
    if failing:
        worst = nans[0] if nans else min(failing, key=lambda r: r.cosine)
        problems.append(f"embeddings differ: min cosine {low:.6f} < {min_cosine} (worst probe "
                        f"'{worst.language}'); probably tokenization (vocabulary, lower-casing), the maximum "
                        "sequence length, a different model under this id, or the torch version used to "
                        "trace")
    return ParityReport(
        min_cosine=low,
        max_abs_diff=max((r.max_abs_diff for r in results), default=float("nan")),
        dims=cluster_dims, local_dims=local_dims, cluster_dims=cluster_dims, template_dims=template_dims,
        probes=results, problems=problems)


def parity(client: Elasticsearch, deployment_id: str, local_model: str | Path,
           probes: Probes = PROBES, *, template_dims: int | None = None,
           min_cosine: float = MIN_COSINE, raise_on_failure: bool = True) -> ParityReport:
    """Embed the probes in the cluster and locally and compare them.

    Args:
        deployment_id: the deployment (or model) id ``_infer`` runs.
        local_model: the sentence-transformers directory the deployment was traced from.
        probes: (language, text) pairs; defaults to ``PROBES`` (en, zh, de, ru, ar, ja, es, fr, long).
        template_dims: the index template's caption vector dims (None: not checked).
        raise_on_failure: raise ``ParityError`` (with the report attached) when a check fails.

    Example::

        report = parity(client, "my-model", "models/my-text-model", template_dims=512)
        report.min_cosine   # 0.99999...
    """
    texts = [t for _, t in probes]
    report = compare(cluster_embeddings(client, deployment_id, texts), local_embeddings(local_model, texts),
                     probes, template_dims=template_dims, min_cosine=min_cosine)
    if raise_on_failure and not report.passed:
        fix = ("set index.caption_dims to the model's dims, or deploy the model the template expects"
               if report.problems[0].startswith("the index template")
               else "deploy the model you embed with: toolkit deploy-model --model <dir or hub id> --replace")
        raise ParityError("parity check failed: " + "; ".join(report.problems), report=report, hint=fix)
    return report
