"""``toolkit deploy-model`` and ``toolkit undeploy``."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from toolkit.cli import ConfigOpt, EsUrlOpt, JsonOpt, app, settings_from
from toolkit.cli.output import err, info, print_json, print_text, scrub

ModelIdOpt = Annotated[str | None, typer.Option(
    "--model-id", help="Trained model id in the cluster (text_model.model_id; default: derived from --model "
                       "as eland does).")]
DeploymentIdOpt = Annotated[str | None, typer.Option(
    "--deployment-id", help="Deployment id (text_model.deployment_id; default: the model id).")]
ModelOpt = Annotated[str | None, typer.Option(
    "--model", help="sentence-transformers text model: hub id or local directory (text_model.hub_id).")]

_STAGES = {"preflight": "preflight", "resolve": "model files", "trace": "tracing", "upload": "uploading",
           "start": "starting", "parity": "parity"}


class _RichProgress:
    """Turns ``progress(stage, done, total, detail)`` calls into one rich progress line per stage."""

    def __init__(self) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(),
                                 MofNCompleteColumn(), TextColumn("{task.fields[detail]}", markup=False), console=err,
                                 transient=False)
        self.tasks: dict[str, Any] = {}

    def __call__(self, stage: str, done: int, total: int | None, detail: str) -> None:
        label = _STAGES.get(stage, stage)
        if stage not in self.tasks:
            self.tasks[stage] = self.progress.add_task(label, total=total, detail=scrub(detail))
        task = self.tasks[stage]
        fields: dict[str, Any] = {"completed": done, "total": total}
        if detail:
            fields["detail"] = scrub(detail)  # file names, model ids: text, never markup or escapes
        self.progress.update(task, **fields)

    def __enter__(self) -> _RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()


@app.command("deploy-model")
def deploy_model_command(
    model: ModelOpt = None,
    model_id: ModelIdOpt = None,
    deployment_id: DeploymentIdOpt = None,
    allocations: Annotated[int | None, typer.Option(
        "--allocations", help="Number of allocations (text_model.number_of_allocations).")] = None,
    threads: Annotated[int | None, typer.Option(
        "--threads", help="Threads per allocation, a power of 2 up to 32 "
                          "(text_model.threads_per_allocation).")] = None,
    queue_capacity: Annotated[int | None, typer.Option(
        "--queue-capacity", help="Inference queue size (text_model.queue_capacity).")] = None,
    priority: Annotated[str | None, typer.Option(
        "--priority", help="normal or low (low: one allocation, one thread) (text_model.priority).")] = None,
    adaptive_min: Annotated[int | None, typer.Option(
        "--adaptive-min", help="Adaptive allocations: minimum (turns adaptive allocations on).")] = None,
    adaptive_max: Annotated[int | None, typer.Option(
        "--adaptive-max", help="Adaptive allocations: maximum (turns adaptive allocations on).")] = None,
    timeout: Annotated[float | None, typer.Option(
        "--timeout", help="Seconds to wait until started and fully allocated "
                          "(text_model.start_timeout).")] = None,
    replace: Annotated[bool, typer.Option(
        "--replace", help="Stop, delete and re-upload the model even if one is there under the id.")] = False,
    skip_parity: Annotated[bool, typer.Option(
        "--skip-parity", help="Do not compare in-cluster embeddings with the local model (nor their dims "
                              "with the index template).")] = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    es_url: EsUrlOpt = None,
) -> None:
    """Trace the text encoder with eland, upload and start it in Elasticsearch, and prove parity.

    Idempotent: the same model (source and revision) already uploaded and started is left alone.
    Parity embeds probe sentences in 8 languages in the cluster and locally and fails below a
    cosine of 0.9999 or on a dims mismatch. Ends with a Kibana Dev Tools request to try the model.

    Example: toolkit deploy-model --threads 2 --adaptive-min 1 --adaptive-max 4
    """
    from toolkit.cluster import make_client
    from toolkit.textmodel import deploy

    adaptive = adaptive_min is not None or adaptive_max is not None
    settings = settings_from(config=config, es_url=es_url, **{
        "text_model.hub_id": model, "text_model.model_id": model_id,
        "text_model.deployment_id": deployment_id, "text_model.number_of_allocations": allocations,
        "text_model.threads_per_allocation": threads,
        "text_model.queue_capacity": queue_capacity, "text_model.priority": priority,
        "text_model.start_timeout": timeout,
        "text_model.adaptive_allocations.enabled": True if adaptive else None,
        "text_model.adaptive_allocations.min_number_of_allocations": adaptive_min,
        "text_model.adaptive_allocations.max_number_of_allocations": adaptive_max,
    })
    client = make_client(settings)
    with _RichProgress() as progress:
        report = deploy(client, settings, replace=replace, skip_parity=skip_parity, progress=progress)
    if as_json:
        print_json(report.as_json())
        return
    verb = {"uploaded": "uploaded and started", "started": "started (already uploaded)",
            "unchanged": "already uploaded and started: nothing to do", "replaced": "replaced and started"}
    info(f"[green]{report.action}[/] model [bold]{report.model_id}[/] as deployment "
         f"[bold]{report.deployment_id}[/]: {verb[report.action]}")
    info(f"  source {escape(report.source)} @ {report.revision}")
    if report.state is not None:
        threads_used = report.state.threads_per_allocation
        info(f"  state {report.state.describe()}, {threads_used} thread(s) per allocation")
    if report.parity is not None:
        p = report.parity
        langs = " ".join(r.language for r in p.probes)
        info(f"  parity [green]passed[/]: min cosine {p.min_cosine:.6f}, max abs diff {p.max_abs_diff:.2e}, "
             f"{p.dims} dims (index template: {p.template_dims}), probes: {langs}")
    else:
        info("  parity [yellow]skipped[/] (--skip-parity): in-cluster embeddings were not compared with the "
             "local model, and their dims not with the index template")
    for warning in report.warnings:
        info(f"[yellow]warning:[/] {escape(warning)}")
    info("Try it in Kibana Dev Tools:")
    print_text(report.devtools)


@app.command("undeploy")
def undeploy_command(
    delete: Annotated[bool, typer.Option(
        "--delete", help="Also delete the model (stops every deployment of it first).")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Stop/delete even when ingest pipelines use the model.")] = False,
    model: ModelOpt = None,
    model_id: ModelIdOpt = None,
    deployment_id: DeploymentIdOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    es_url: EsUrlOpt = None,
) -> None:
    """Stop the text model's deployment; with --delete remove the model from the cluster too.

    Example: toolkit undeploy --delete
    """
    from toolkit.cluster import make_client
    from toolkit.textmodel import undeploy

    settings = settings_from(config=config, es_url=es_url, **{
        "text_model.hub_id": model, "text_model.model_id": model_id,
        "text_model.deployment_id": deployment_id})
    report = undeploy(make_client(settings), settings, delete=delete, force=force)
    if as_json:
        print_json(report.as_json())
        return
    info(f"stopped deployment {report.deployment_id}" if report.stopped
         else f"deployment {report.deployment_id} was not running")
    if delete:
        info(f"deleted model {report.model_id}" if report.deleted
             else f"model {report.model_id} was not there")
