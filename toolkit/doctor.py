"""``toolkit doctor``: every precondition of the toolkit, checked and reported with its fix.

Each check yields a ``Check`` (ok / warn / fail / skip). A failing check carries the exit code of the
error class it stands for, so the command's exit code tells which problem came first.

Example::

    results = run_checks(client, settings)
    [c.name for c in results if c.status == "fail"]
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Literal

from toolkit import assets as asset_mod
from toolkit import cluster as cl
from toolkit import errors
from toolkit.devtools import Request, exists, path, send
from toolkit.settings import Settings, mask_url

if TYPE_CHECKING:
    from elasticsearch import Elasticsearch

Status = Literal["ok", "warn", "fail", "skip"]
# The default text model's TorchScript file is about 540 MB (135M float32 parameters).
DEFAULT_TEXT_MODEL_BYTES = 540 * 1024 * 1024


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    message: str
    fix: str | None = None
    exit_code: int = 0

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _fail(name: str, exc: errors.ToolkitError) -> Check:
    return Check(name, "fail", exc.message, exc.hint, exc.exit_code)


def exit_code(results: list[Check]) -> int:
    """0 when nothing failed, else the exit code of the first failure."""
    return next((c.exit_code or 1 for c in results if c.status == "fail"), 0)


def _trained_model(client: Elasticsearch, model_id: str) -> dict[str, Any] | None:
    try:
        body = send(client, Request("GET", f"_ml/trained_models/{path(model_id)}"))
    except errors.NotFound:
        return None
    configs = body.get("trained_model_configs") or []
    return configs[0] if configs else None


def _deployment_state(client: Elasticsearch, deployment_id: str, model_id: str) -> str | None:
    try:
        body = send(client, Request("GET", f"_ml/trained_models/{path(model_id)}/_stats"))
    except errors.NotFound:
        return None
    for stats in body.get("trained_model_stats", []):
        dep = stats.get("deployment_stats")
        if dep and dep.get("deployment_id", model_id) == deployment_id:
            return str(dep.get("state"))
    return None


def run_checks(client: Elasticsearch, settings: Settings, *, local_torch: str | None = None) -> list[Check]:
    """Run every check in order; later checks are skipped when the cluster cannot be reached.

    Args:
        client: the official client.
        settings: the effective settings.
        local_torch: the local torch version (defaults to the installed one, read without importing torch).
    """
    results: list[Check] = []
    try:
        facts = cl.cluster_facts(client)
    except (errors.ConnectionFailed, errors.ClusterError) as exc:
        # Only a refused login is an auth failure; no answer, or an answer from another server, is not reachable.
        refused = isinstance(exc, (errors.AuthenticationFailed, errors.AuthorizationFailed))
        name = "auth" if refused else "reachable"
        if name == "auth":
            # It answered (with a refusal): say so, so every check keeps its row in the report.
            results.append(Check("reachable", "ok", f"the cluster at {mask_url(settings.elasticsearch.url)} "
                                                    "answered"))
        results.append(_fail(name, exc))
        rest = ["auth", "version", "license", "ml_nodes", "text_model", "assets", "index", "dims", "torch"]
        results += [Check(n, "skip", "skipped: the cluster did not answer") for n in rest if n != name]
        return results
    results.append(Check("reachable", "ok", f"Elasticsearch {facts.version} at {mask_url(settings.elasticsearch.url)}"))
    results.append(Check("auth", "ok", "credentials accepted" if settings.secrets() else "no security needed"))

    try:
        cl.require_supported(facts)
        results.append(Check("version", "ok", f"{facts.version} is supported (9.1+)"))
    except errors.UnsupportedVersion as exc:
        results.append(_fail("version", exc))

    if facts.ml_allowed:
        results.append(Check("license", "ok", f"{facts.license_type} license allows ML"))
    else:
        results.append(_fail("license", errors.LicenseError(
            f"the {facts.license_type} license ({facts.license_status}) does not allow ML models",
            hint="start a 30-day trial: POST _license/start_trial?acknowledge=true (or install a "
                 "Platinum/Enterprise license)")))

    model_id = settings.text_model.cluster_model_id
    model = _trained_model(client, model_id) if facts.ml_allowed else None
    model_bytes = int((model or {}).get("model_size_bytes") or DEFAULT_TEXT_MODEL_BYTES)
    needed = cl.deployment_memory_bytes(model_bytes)
    try:
        capacity = cl.ml_capacity(client)
        cl.require_ml_capacity(capacity, needed)
        results.append(Check("ml_nodes", "ok", f"{capacity.nodes} ML node(s), "
                             f"{capacity.max_node_memory_bytes / 1024**2:.0f} MB for models; "
                             f"the text model needs about {needed / 1024**2:.0f} MB"))
    except errors.ToolkitError as exc:
        results.append(_fail("ml_nodes", exc))

    deployment_id = settings.text_model.cluster_deployment_id
    if not facts.ml_allowed:
        results.append(Check("text_model", "skip", "skipped: the license does not allow ML"))
    elif model is None:
        results.append(_fail("text_model", errors.NotFound(
            f"text model '{model_id}' is not in the cluster", what="model", name=model_id,
            hint="run `toolkit deploy-model`")))
    else:
        state = _deployment_state(client, deployment_id, model_id)
        if state == "started":
            results.append(Check("text_model", "ok", f"'{model_id}' deployed as '{deployment_id}' and started"))
        else:
            results.append(_fail("text_model", errors.NotFound(
                f"text model '{model_id}' is uploaded but its deployment '{deployment_id}' is "
                f"{state or 'not started'}", what="deployment", name=deployment_id,
                hint="run `toolkit deploy-model` (it starts an uploaded model)")))

    try:
        planned = asset_mod.load_assets(settings)
    except errors.ToolkitError as exc:
        results.append(_fail("assets", exc))
        planned = []
    if planned:
        stale = []
        for asset in planned:
            if asset.kind == "index":
                continue
            stored = asset_mod.stored_hash(client, asset)
            if stored is None:
                stale.append(f"{asset.kind.replace('_', ' ')} {asset.name} is missing")
            elif stored != asset.body["_meta"]["toolkit_hash"]:
                stale.append(f"{asset.kind.replace('_', ' ')} {asset.name} differs from the files")
        if stale:
            results.append(Check("assets", "fail", "; ".join(stale), "run `toolkit setup`",
                                 errors.NotFound.exit_code))
        else:
            results.append(Check("assets", "ok", "templates and pipeline installed and current"))

    alias = settings.index.alias
    if exists(client, path(alias)):
        results.append(_index_check(client, settings, planned))
    else:
        results.append(Check("index", "fail", f"index '{alias}' does not exist",
                             "run `toolkit setup` (it creates the first index behind the alias)",
                             errors.NotFound.exit_code))

    results.append(_dims_check(client, settings, planned, model))
    results.append(_torch_check(facts, local_torch))
    return results


def _index_check(client: Elasticsearch, settings: Settings, planned: list[asset_mod.Asset]) -> Check:
    """The index behind the alias maps every field the templates define and the pipeline writes.

    An index made by an older toolkit lacks fields that the current pipeline writes (or the installed
    pipeline, from an older toolkit, writes fields no index maps): under the strict mapping every
    captioned document would be rejected.
    """
    from toolkit.provision import unmapped_pipeline_fields

    alias = settings.index.alias
    problems = unmapped_pipeline_fields(client, settings)
    wanted = asset_mod.template_properties(planned)
    for index_name, lacking in asset_mod.missing_fields(client, alias, wanted).items():
        problems.append(f"index {index_name} lacks {', '.join(lacking)} (made by an older toolkit)")
    if problems:
        return Check("index", "fail", "; ".join(problems),
                     "run `toolkit setup` (it updates the pipeline and adds the missing fields to the index)",
                     errors.NotFound.exit_code)
    return Check("index", "ok", f"index '{alias}' exists and maps every field the pipeline writes")


def _dims_check(client: Elasticsearch, settings: Settings, planned: list[asset_mod.Asset],
                model: dict[str, Any] | None) -> Check:
    from toolkit.provision import image_model_dims

    caption_dims = None
    if model:
        caption_dims = model.get("inference_config", {}).get("text_embedding", {}).get("embedding_size")
    problems: list[str] = []
    f = settings.fields
    image_dims = image_model_dims(settings)  # reads the model's files (or the hub): once
    try:
        mapping = send(client, Request("GET", f"{path(settings.index.alias)}/_mapping"))
    except errors.NotFound:
        mapping = {}
    for index_name, body in mapping.items():
        props = body.get("mappings", {}).get("properties", {})
        for field, want, what in ((f.image_vector, image_dims, "image model"),
                                  (f.caption_vector, caption_dims, "text model")):
            have = props.get(field, {}).get("dims")
            if want and have and int(have) != int(want):
                problems.append(f"index {index_name} maps '{field}' with {have} dims but the {what} "
                                f"outputs {want}")
        # Text-to-image search embeds the text with the text model and compares it with image vectors.
        image_have = props.get(f.image_vector, {}).get("dims")
        if caption_dims and image_have and int(image_have) != int(caption_dims):
            problems.append(f"the text model outputs {caption_dims} dims but index {index_name} holds "
                            f"{image_have}-dim image vectors: text queries cannot search the images")
    try:
        asset_mod.check_dims(planned, settings, image_dims=image_dims,
                             caption_dims=int(caption_dims) if caption_dims else None)
    except errors.DimsMismatch as exc:
        problems.append(exc.message)
    if problems:
        return Check("dims", "fail", "; ".join(problems),
                     "make index.image_dims / index.caption_dims match the models, then run `toolkit "
                     "setup` and re-create the index (or create a new one behind the alias)",
                     errors.DimsMismatch.exit_code)
    return Check("dims", "ok", "vector dims agree between templates, index and models")


def _local_torch_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("torch")
    except PackageNotFoundError:
        return None


def _torch_check(facts: cl.ClusterFacts, local_torch: str | None) -> Check:
    local = local_torch or _local_torch_version()
    remote = facts.libtorch
    if not local or not remote:
        return Check("torch", "warn", f"cannot compare local torch ({local or 'not installed'}) with the "
                     f"cluster's libtorch ({remote or 'unknown'})")
    if cl.parse_version(local)[:2] > cl.parse_version(remote)[:2]:
        return Check("torch", "warn",
                     f"local torch {local} is newer than the cluster's libtorch {remote}: a trace may not "
                     "load there", f"pip install torch=={remote} before `toolkit deploy-model` if the "
                     "deployment fails to start")
    return Check("torch", "ok", f"local torch {local} <= cluster libtorch {remote}")
