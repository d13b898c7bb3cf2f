"""``toolkit quickstart``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape

from toolkit.cli import ConfigOpt, EsUrlOpt, JsonOpt, app, settings_from
from toolkit.cli.output import err, info, print_json, print_text

if TYPE_CHECKING:
    from toolkit.quickstart import QuickstartReport


def _hit_line(rank: int, hit: Any) -> str:
    src = hit.source
    what = src.get("caption") or src.get("label") or src.get("path") or src.get("url") or ""
    if len(what) > 70:
        what = what[:67] + "..."
    score = f"{hit.score:.4f}" if hit.score is not None else "-"
    return f"  {rank}. {hit.id:<24} {score}  {what}"


def render_report(report: QuickstartReport) -> str:
    """The human summary: hits of each query, what to try next, the Kibana requests."""
    lines = [f"indexed {report.ingest.indexed}, skipped {report.ingest.skipped} (already there), "
             f"failed {report.ingest.failed} of {report.ingest.seen} from {report.source}", ""]
    for q in report.queries:
        lines.append(f"{q.title}: {q.query}")
        lines += [_hit_line(i, h) for i, h in enumerate(q.result.hits, start=1)] or ["  (no hits)"]
        lines.append("")
    lines.append("Try next:")
    lines += [f"  {step}" for step in report.next_steps]
    lines += ["", "In Kibana Dev Tools (Console), paste:", "", report.devtools]
    return "\n".join(lines)


@app.command("quickstart")
def quickstart_command(
    dataset: Annotated[str | None, typer.Option(
        "--dataset", help="Ingest a public dataset instead of the bundled photos: towhee | unsplash-lite "
                          "(downloaded once into --data-dir).")] = None,
    data_dir: Annotated[Path, typer.Option(
        "--data-dir", help="Where datasets are downloaded and extracted.", file_okay=False)] = Path("toolkit-data"),
    dataset_url: Annotated[str | None, typer.Option(
        "--dataset-url", help="Download the dataset zip from this URL instead (a mirror).")] = None,
    limit: Annotated[int | None, typer.Option(
        "--limit", help="Ingest at most this many images of the dataset.", min=1)] = None,
    text_model: Annotated[str | None, typer.Option(
        "--text-model", help="Hub id or folder of the sentence-transformers text model (text_model.hub_id).")] = None,
    model_id: Annotated[str | None, typer.Option(
        "--model-id", help="Model id in the cluster (text_model.model_id; default derived from the model).")] = None,
    image_model: Annotated[str | None, typer.Option(
        "--image-model", help="sentence-transformers CLIP model id or folder (image_model.name).")] = None,
    index: Annotated[str | None, typer.Option("--index", help="Alias to create and fill (index.alias).")] = None,
    wait: Annotated[float, typer.Option(
        "--wait", help="Seconds to wait for the cluster to be ready (yellow).", min=1)] = 120.0,
    skip_parity: Annotated[bool, typer.Option(
        "--skip-parity", help="Do not compare the deployed text model with the local one.")] = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    es_url: EsUrlOpt = None,
) -> None:
    """Deploy the text model, set up the index, ingest sample photos and run a few searches.

    Waits for the cluster first. Re-running is quick: every step is idempotent and ingest resumes.

    Example: toolkit quickstart --dataset towhee --data-dir data
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from toolkit.cluster import make_client
    from toolkit.datasets import DATASETS
    from toolkit.errors import ValidationError
    from toolkit.quickstart import quickstart

    if dataset is not None and dataset not in DATASETS:
        raise ValidationError(f"unknown dataset {dataset!r}", hint=f"use --dataset {' | '.join(DATASETS)}")
    settings = settings_from(config=config, es_url=es_url, **{
        "text_model.hub_id": text_model, "text_model.model_id": model_id, "image_model.name": image_model,
        "index.alias": index})
    progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=err, transient=True)
    tasks: dict[str, Any] = {}

    def bar(key: str, description: str, total: int | None) -> Any:
        if key not in tasks:
            tasks[key] = progress.add_task(description, total=total)
        return tasks[key]

    def on_wait(seconds: float, why: str) -> None:
        info(f"  still waiting for the cluster ({seconds:.0f}s): {escape(why)}")

    def on_deploy(stage: str, done: int, total: int | None, detail: str) -> None:
        if stage == "upload" and total:
            progress.update(bar("upload", "uploading the model", total), completed=done)
        elif detail:
            info(f"  {stage}: {escape(detail)}")

    def on_download(done: int, total: int | None) -> None:
        progress.update(bar("download", "downloading", total), completed=done)

    def on_ingest(p: Any) -> None:
        task = bar("ingest", "indexing", limit)
        progress.update(task, completed=p.seen, description=f"indexing ({p.indexed} indexed, {p.skipped} "
                                                            f"skipped, {p.failed} failed)")

    with progress:
        report = quickstart(make_client(settings), settings, dataset=dataset, data_dir=data_dir,
                            dataset_url=dataset_url, limit=limit, wait=wait, skip_parity=skip_parity,
                            on_step=lambda line: info(f"[bold]>[/] {escape(line)}"), on_wait=on_wait,
                            deploy_progress=on_deploy, download_progress=on_download, ingest_progress=on_ingest)
    if as_json:
        print_json(report.as_json())
        return
    print_text(render_report(report))
