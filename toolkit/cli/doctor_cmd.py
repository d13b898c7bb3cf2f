"""``toolkit doctor``."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from toolkit.cli import ConfigOpt, EsUrlOpt, app, settings_from
from toolkit.cli.output import out, print_json, scrub

_STYLE = {"ok": "green", "warn": "yellow", "fail": "bold red", "skip": "dim"}


@app.command("doctor")
def doctor_command(
    as_json: Annotated[bool, typer.Option(
        "--json", help='Print {"ok": bool, "exit_code": N, "checks": [{name, status, message, fix}]}.')] = False,
    config: ConfigOpt = None,
    es_url: EsUrlOpt = None,
) -> None:
    """Check the cluster, license, ML nodes, text model, assets, index, dims and torch versions.

    Exits non-zero when any check fails, with the exit code of the first failure.

    Example: toolkit doctor --json
    """
    from toolkit import doctor
    from toolkit.cluster import make_client

    settings = settings_from(config=config, es_url=es_url)
    results = doctor.run_checks(make_client(settings), settings)
    code = doctor.exit_code(results)
    if as_json:
        print_json({"ok": code == 0, "exit_code": code,
                    "checks": [{k: v for k, v in c.as_dict().items() if k != "exit_code"} for c in results]})
    else:
        for c in results:
            out.print(f"[{_STYLE[c.status]}]{c.status:<4}[/] {c.name:<10} {escape(scrub(c.message))}",
                      highlight=False)
            if c.fix and c.status in ("fail", "warn"):
                out.print(f"                fix: {escape(scrub(c.fix))}", highlight=False)
    raise typer.Exit(code)
