"""``toolkit setup``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from toolkit.cli import ConfigOpt, EsUrlOpt, JsonOpt, app, settings_from
from toolkit.cli.output import info, print_json, print_text


@app.command("setup")
def setup_command(
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the requests in Kibana Dev Tools form and send nothing.")] = False,
    index: Annotated[str | None, typer.Option("--index", help="Alias to create (index.alias).")] = None,
    assets_dir: Annotated[Path | None, typer.Option(
        "--assets-dir", help="Folder with index-templates/ and ingest-pipelines/.")] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    es_url: EsUrlOpt = None,
) -> None:
    """Install the index templates, the caption-embedding pipeline and the first index.

    Idempotent: each asset is reported as created, updated or unchanged.

    Example: toolkit setup --dry-run > setup.http
    """
    from toolkit import provision
    from toolkit.assets import AssetResult
    from toolkit.cluster import make_client
    from toolkit.devtools import render_all

    settings = settings_from(config=config, es_url=es_url, **{"index.alias": index})
    if dry_run:
        print_text(render_all(a.request for a in provision.plan(settings, assets_dir)))
        return
    client = make_client(settings)

    def show(result: AssetResult) -> None:
        if not as_json:
            colour = {"created": "green", "updated": "yellow", "unchanged": "dim"}[result.outcome]
            info(f"[{colour}]{result.outcome:<9}[/] {result.kind.replace('_', ' ')} {result.name}")

    report = provision.setup(client, settings, assets_dir=assets_dir, on_result=show)
    if as_json:
        print_json({"results": [{"kind": r.kind, "name": r.name, "outcome": r.outcome} for r in report.results],
                    "warnings": report.warnings, "changed": report.changed})
        return
    for warning in report.warnings:
        info(f"[yellow]warning:[/] {escape(warning)}")
    info("setup done: " + ("changes applied" if report.changed else "nothing to change"))
