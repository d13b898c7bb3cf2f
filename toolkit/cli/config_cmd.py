"""``toolkit config show``."""

from __future__ import annotations

from typing import Annotated

import typer

from toolkit.cli import ConfigOpt, EsUrlOpt, app, settings_from
from toolkit.cli.output import print_json, print_text

config_app = typer.Typer(help="Inspect the effective settings.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("show")
def show(
    as_json: Annotated[bool, typer.Option("--json", help="Print {key: {value, source}} as JSON.")] = False,
    config: ConfigOpt = None,
    es_url: EsUrlOpt = None,
) -> None:
    """Print the effective settings, where each value came from, secrets masked.

    Sources: flag, env:VAR, file:PATH:LINE, default.
    """
    settings = settings_from(config=config, es_url=es_url)
    rows = [(key, value, settings.origin(key)) for key, value in settings.flat().items()]
    if as_json:
        print_json({key: {"value": value, "source": source} for key, value, source in rows})
        return
    width = max(len(k) for k, _, _ in rows)
    lines = [f"{key:<{width}}  {'' if value is None else value!s:<40}  {source}" for key, value, source in rows]
    print_text("\n".join(lines))
