"""``toolkit migrate``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from toolkit.cli import ConfigOpt, EsUrlOpt, JsonOpt, app, settings_from
from toolkit.cli.output import info, print_json, print_text


@app.command("migrate")
def migrate_command(
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the plan as Kibana Dev Tools requests; reads the cluster, changes nothing.")] = False,
    rollback: Annotated[bool, typer.Option(
        "--rollback", help="Point the alias back at the index before the current one.")] = False,
    cleanup: Annotated[bool, typer.Option(
        "--cleanup", help="Delete the indices older than the one behind the alias (never done otherwise).")] = False,
    index: Annotated[str | None, typer.Option("--index", help="The alias searched (index.alias).")] = None,
    index_options: Annotated[str | None, typer.Option(
        "--index-options", help="New vector index_options type, e.g. int4_hnsw, bbq_hnsw "
                                "(index.index_options.type).")] = None,
    shards: Annotated[int | None, typer.Option("--shards", min=1, help="New number of shards (index.shards).")] = None,
    image_model: Annotated[str | None, typer.Option(
        "--image-model", help="New image model (image_model.name): documents embedded with another "
                               "one are re-embedded.")] = None,
    image_dims: Annotated[int | None, typer.Option(
        "--image-dims", min=1, max=4096, help="Output dims of the new image model (index.image_dims).")] = None,
    pipeline: Annotated[str | None, typer.Option(
        "--pipeline", help="Name of the new caption pipeline version, for a new text model (index.pipeline).")] = None,
    reembed_images: Annotated[bool, typer.Option(
        "--reembed-images", help="Re-embed every image even though the model name is the same.")] = False,
    accept: Annotated[bool, typer.Option(
        "--accept", help="Switch even when verification found differences (they are still reported).")] = False,
    failures_dir: Annotated[Path | None, typer.Option(
        "--failures-dir", file_okay=False, help="Folder for re-embedding failures files (default: here).")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    es_url: EsUrlOpt = None,
) -> None:
    """Move the alias to a new index built from the current settings, without downtime.

    Change toolkit.yaml (or pass the flags), then run it: it prints the plan, builds images-00000N,
    fills it (_reindex, or re-embedding for a new image model), catches up documents written meanwhile,
    verifies counts and sample queries, and switches the alias in one atomic request. A second run
    after a failure resumes. --rollback points the alias back; --cleanup deletes old indices.

    Example: toolkit migrate --index-options int4_hnsw --dry-run
    """
    from toolkit import migrate
    from toolkit.cluster import make_client
    from toolkit.errors import ValidationError
    from toolkit.ingest import IngestReport

    if sum((dry_run, rollback, cleanup)) > 1:
        raise ValidationError("--dry-run, --rollback and --cleanup go one at a time",
                              hint="run `toolkit migrate --rollback` or `toolkit migrate --cleanup` alone")
    settings = settings_from(config=config, es_url=es_url, **{
        "index.alias": index, "index.index_options.type": index_options, "index.shards": shards,
        "image_model.name": image_model, "index.image_dims": image_dims, "index.pipeline": pipeline})
    client = make_client(settings)
    if rollback:
        back = migrate.rollback(client, settings)
        if as_json:
            print_json(back.as_json())
            return
        info(f"{escape(back.alias)} now points at {escape(back.restored)} (was {escape(', '.join(back.left))})")
        if back.only_in_left:
            info(f"[yellow]warning:[/] {back.only_in_left} document(s) written since the switch are only in "
                 f"{escape(', '.join(back.left))}; it is kept")
        return
    if cleanup:
        done = migrate.cleanup(client, settings)
        if as_json:
            print_json(done.as_json())
            return
        info("deleted " + escape(", ".join(done.indices + done.pipelines + done.models)))
        for note in done.notes:
            info(escape(note))
        return
    current = migrate.read_current(client, settings)
    plan = migrate.make_plan(current, settings, reembed_images=reembed_images)
    if dry_run:
        if as_json:
            print_json({"plan": plan.as_json(), "devtools": migrate.render_plan(plan, settings)})
        else:
            print_text(migrate.render_plan(plan, settings))
        return
    if not plan.changes:
        if as_json:
            print_json({"plan": plan.as_json(), "switched": False})
        else:
            info(f"nothing to migrate: {escape(current.index)} already matches the settings")
        return
    if plan.recaption:
        migrate.check_text_model(client, settings)
    if not as_json:
        info(f"migrating {escape(plan.alias)}: {escape(', '.join(plan.sources))} -> {escape(plan.target)} "
             f"[{plan.kind}]" + (" (resuming)" if plan.resume else ""))
        for line in plan.changes:
            info(f"  {escape(line)}")

    def step(name: str) -> None:
        if not as_json:
            info(f"[dim]{name}[/]")

    pages = [0, 0]

    def page(result: IngestReport) -> None:
        pages[0] += result.indexed
        pages[1] += result.failed
        if not as_json:
            info(f"[dim]  re-embedded {pages[0]}" + (f", {pages[1]} failed" if pages[1] else "") + "[/]")

    try:
        report = migrate.run_migration(client, settings, plan, failures_dir=failures_dir, accept=accept,
                                       on_step=step, on_page=page)
    except Exception as exc:
        results = getattr(exc, "results", None)
        if as_json and isinstance(results, migrate.MigrationReport):
            print_json(results.as_json())
        raise
    if as_json:
        print_json(report.as_json())
        return
    overlap = report.mean_overlap
    info(f"counts: {report.old_count} before, {report.new_count} after"
         + (f"; sample queries overlap@10: {overlap:.2f}" if overlap is not None else "")
         + (f"; re-embedded {report.reembedded}" if plan.reembed_images else ""))
    for problem in report.problems:
        info(f"[yellow]accepted:[/] {escape(problem)}")
    for warning in report.warnings:
        info(f"[yellow]warning:[/] {escape(warning)}")
    info(f"{escape(plan.alias)} now points at {escape(plan.target)}; "
         f"`toolkit migrate --rollback` points it back, `toolkit migrate --cleanup` deletes "
         f"{escape(', '.join(plan.sources))}")
