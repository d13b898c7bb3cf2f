"""``toolkit eval``: retrieval quality on a labeled source, measured through the live index.

Thin: parses options, calls ``toolkit.evaluate.evaluate`` and prints a table, JSON or a PNG. Text
prompts are embedded by the cluster; torch loads only for image queries (``--like``, ``--image-queries``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from toolkit.cli import ConfigOpt, EsUrlOpt, JsonOpt, app, settings_from
from toolkit.cli.output import info, print_json


@app.command("eval")
def eval_command(
    source: Annotated[Path, typer.Argument(
        help="The labeled images the index holds: a manifest with a label column, a folder with one "
             "subfolder per label, or the towhee folder.", show_default=False)],
    labels: Annotated[Path | None, typer.Option(
        "--labels", help="YAML file: labels: {LABEL: {LANG: words}}, optional templates: {LANG: [prompts]}.",
        show_default=False)] = None,
    languages: Annotated[list[str] | None, typer.Option(
        "--lang", help="Prompt language; repeat it (default: every language of --labels).",
        show_default=False)] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="Hits per query (recall@k, precision@k, mAP@k).")] = 10,
    num_candidates: Annotated[int | None, typer.Option(
        "--num-candidates", help="kNN candidates (default as toolkit search: max(100, 10 x k)).",
        show_default=False)] = None,
    filters: Annotated[list[str] | None, typer.Option(
        "--filter", help="FIELD=VALUE filter on every query (exact search too); repeat it.",
        show_default=False)] = None,
    like: Annotated[bool, typer.Option(
        "--like", help="Image to image, leave-one-out: each labeled image searches for the others.")] = False,
    image_queries: Annotated[Path | None, typer.Option(
        "--image-queries", help="Image to image with held-out labeled query images (manifest or folder).",
        show_default=False)] = None,
    max_image_queries: Annotated[int, typer.Option(
        "--max-image-queries", help="At most this many image queries.")] = 200,
    ann: Annotated[bool, typer.Option(
        "--ann/--no-ann", help="ANN fidelity: approximate kNN against exact script_score search.")] = True,
    sweep: Annotated[str | None, typer.Option(
        "--sweep", help="Comma-separated num_candidates for the ANN sweep (default k x 1,2,5,10,20,50).",
        show_default=False)] = None,
    max_ann_queries: Annotated[int, typer.Option(
        "--max-ann-queries", help="At most this many prompts (evenly spaced) for ANN fidelity.")] = 100,
    plot: Annotated[Path | None, typer.Option(
        "--plot", help="Write a PNG: recall vs num_candidates and per-language bars (needs matplotlib).",
        show_default=False)] = None,
    index: Annotated[str | None, typer.Option("--index", help="Alias or index to evaluate (index.alias).",
                                              show_default=False)] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    es_url: EsUrlOpt = None,
) -> None:
    """Measure retrieval on your labeled images through the live index.

    Text to image (recall@1, recall@k, precision@k, mAP@k per language), image to image (precision@k),
    ANN fidelity against exact search, and latency. Formulas: README, "Eval".

    Examples:
      toolkit eval shapes/ --labels labels.yaml --lang en --lang de
      toolkit eval data/reverse_image_search --like -k 5 --json --plot eval.png
    """
    from toolkit.cluster import make_client
    from toolkit.errors import ValidationError
    from toolkit.evaluate import check_plot_path, evaluate
    from toolkit.evaluate import plot as write_plot

    sweep_values = None
    if sweep is not None:
        try:
            sweep_values = [int(v) for v in sweep.split(",") if v.strip()]
        except ValueError:
            raise ValidationError(f"--sweep {sweep!r} is not a comma-separated list of numbers",
                                  hint="e.g. --sweep 10,50,100,500") from None
        if not sweep_values:
            raise ValidationError("--sweep is empty", hint="e.g. --sweep 10,50,100,500")
    if plot is not None:
        check_plot_path(plot)  # before minutes of queries, not after
    settings = settings_from(config=config, es_url=es_url, **{"index.alias": index})

    def progress(stage: str, done: int, total: int) -> None:
        if done == total:
            info(f"{stage}: {total} queries done")

    report = evaluate(make_client(settings), settings, source=source, labels_file=labels,
                      languages=tuple(languages or ()), k=k, num_candidates=num_candidates,
                      filters=tuple(filters or ()), like=like, image_queries=image_queries,
                      max_image_queries=max_image_queries, ann=ann, sweep=sweep_values,
                      max_ann_queries=max_ann_queries, index=index,
                      on_progress=progress)
    if plot is not None:
        info(f"plot written to {write_plot(report, plot)}")
    if as_json:
        print_json(report.as_json())
        return
    _print_table(report)


def _print_table(report: object) -> None:
    from rich.table import Table
    from rich.text import Text

    from toolkit.cli.output import out, scrub
    from toolkit.evaluate import EvalReport, table_rows

    assert isinstance(report, EvalReport)
    table = Table(title=Text(scrub(f"eval of {report.index}: {report.items} images, {report.labels} labels, "
                                   f"k={report.k}, num_candidates={report.num_candidates}")), title_justify="left")
    table.add_column("what")
    table.add_column("figure")
    table.add_column("value", overflow="fold")
    for section, figure, value in table_rows(report):
        table.add_row(Text(scrub(section)), Text(figure), Text(value))
    out.print(table)
    skipped = {k: v for k, v in report.skipped.items() if v}
    if skipped:
        info("left out: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in skipped.items()))
