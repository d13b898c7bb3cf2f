"""``toolkit smoke``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from toolkit.cli import ConfigOpt, EsUrlOpt, app, settings_from
from toolkit.cli.output import info, print_json, print_text, scrub


@app.command("smoke")
def smoke_command(
    keep: Annotated[bool, typer.Option(
        "--keep", help="Leave the temporary index, its templates and pipeline in the cluster.")] = False,
    junit_xml: Annotated[Path | None, typer.Option(
        "--junit-xml", help="Also write the checks as JUnit XML to this file (for CI test reports).",
        dir_okay=False)] = None,
    semantic: Annotated[bool | None, typer.Option(
        "--semantic/--no-semantic", help="Also check that 'a cat' finds the cat photo, and so on "
                                         "(default: only with the default real models).",
        show_default=False)] = None,
    image_model: Annotated[str | None, typer.Option(
        "--image-model", help="sentence-transformers CLIP model id or folder (image_model.name).")] = None,
    as_json: Annotated[bool, typer.Option(
        "--json", help='Print {"passed": bool, "checks": [{"name", "passed", "message", "seconds"}], '
                       '"seconds"}.')] = False,
    config: ConfigOpt = None,
    es_url: EsUrlOpt = None,
) -> None:
    """End-to-end smoke test of the cluster: model, pipeline, ingest, text and image queries.

    Works in a temporary index (removed afterwards unless --keep). Prints one verdict line; exits 0
    only when every check passed, 30 otherwise.

    Example: toolkit smoke --junit-xml smoke.xml
    """
    from toolkit.cluster import make_client
    from toolkit.errors import CheckFailed, ValidationError
    from toolkit.smoke import SmokeCheck, run_smoke

    settings = settings_from(config=config, es_url=es_url, **{"image_model.name": image_model})
    if junit_xml is not None:
        # Fail before the minutes of checks, not with a traceback after them; CI paths like
        # reports/smoke.xml get their folder.
        try:
            junit_xml.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValidationError(f"cannot write the JUnit report {junit_xml}: {exc.strerror or exc}",
                                  hint="fix --junit-xml (a file in a writable folder)") from exc

    def show(check: SmokeCheck) -> None:
        mark = "[green]pass[/]" if check.passed else "[bold red]FAIL[/]"
        info(f"{mark} {check.name:<14} {escape(check.message)} [dim]({check.seconds:.1f}s)[/]")

    report = run_smoke(make_client(settings), settings, keep=keep, semantic=semantic, on_check=show)
    if junit_xml is not None:
        try:
            junit_xml.write_text(report.junit_xml(scrub=scrub), encoding="utf-8")
        except OSError as exc:
            raise ValidationError(f"cannot write the JUnit report {junit_xml}: {exc.strerror or exc}",
                                  hint="fix --junit-xml (a file in a writable folder)") from exc
    if as_json:
        print_json(report.as_json())
    else:
        print_text(report.verdict())
    if not report.passed:
        first = report.failures[0]
        raise CheckFailed(f"{len(report.failures)} of {len(report.checks)} smoke checks failed, first "
                          f"{first.name}: {first.message}", results=report,
                          hint=first.fix or "run `toolkit doctor` for details")
