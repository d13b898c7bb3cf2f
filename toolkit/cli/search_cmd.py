"""``toolkit search``: text, image and "like this document" queries, printed as a table or JSON.

Nothing heavy is imported here: a text search never loads torch (an image search loads the image
model inside ``toolkit.search.embed_query_image``).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from toolkit.cli import ConfigOpt, EsUrlOpt, JsonOpt, app, settings_from
from toolkit.cli.output import info, print_json, print_text


@app.command("search")
def search_command(
    text: Annotated[str | None, typer.Argument(help="What to look for, in any language the model knows.",
                                               show_default=False)] = None,
    image: Annotated[str | None, typer.Option(
        "--image", help="Find images like this one (a file path or an http(s) URL); embedded locally.",
        show_default=False)] = None,
    like: Annotated[str | None, typer.Option(
        "--like", help="Find images like the indexed document with this id (it is left out).")] = None,
    k: Annotated[int, typer.Option("-k", "--k", help="Number of hits.")] = 10,
    num_candidates: Annotated[int | None, typer.Option(
        "--num-candidates", help="kNN candidates per shard (default max(100, 10 x k), at most 10000).",
        show_default=False)] = None,
    filters: Annotated[list[str] | None, typer.Option(
        "--filter", help="FIELD=VALUE term filter applied before the vector search; repeat it. Several "
                         "values for one field match any of them.", show_default=False)] = None,
    min_similarity: Annotated[float | None, typer.Option(
        "--min-similarity", help="Drop hits whose vector similarity (the cosine for cosine) is below this.",
        show_default=False)] = None,
    min_score: Annotated[float | None, typer.Option(
        "--min-score", help="Drop hits whose _score is below this.", show_default=False)] = None,
    collapse: Annotated[str | None, typer.Option(
        "--collapse", help="One hit per value of this keyword field (e.g. relation_id).",
        show_default=False)] = None,
    fields: Annotated[str | None, typer.Option(
        "--fields", help="Comma-separated _source fields to return (default: all but the vectors).",
        show_default=False)] = None,
    hybrid: Annotated[bool, typer.Option(
        "--hybrid", help="Also match the caption: BM25 and its in-cluster embedding (RRF when the license "
                         "allows, else a boosted sum).")] = False,
    caption_weight: Annotated[float | None, typer.Option(
        "--caption-weight", help="Hybrid with this weight on the caption parts (boosted sum; image = 1).",
        show_default=False)] = None,
    rrf: Annotated[bool | None, typer.Option(
        "--rrf/--no-rrf", help="Hybrid: insist on RRF (error when the license lacks it) or on the boosted "
                               "sum. Default: RRF when possible.", show_default=False)] = None,
    show_request: Annotated[bool, typer.Option(
        "--show-request", help="Print the request in Kibana Dev Tools form (stderr with --json).")] = False,
    dry_run: Annotated[bool, typer.Option(
        "--dry-run", help="Print the request and send nothing (no cluster needed).")] = False,
    index: Annotated[str | None, typer.Option("--index", help="Alias or index to search (index.alias).",
                                              show_default=False)] = None,
    precision: Annotated[str | None, typer.Option(
        "--precision", help="--image: auto | int8 | bf16 | fp16 | fp32 (image_model.precision), checked "
                            "against fp32 as in ingest.", show_default=False)] = None,
    strict: Annotated[bool | None, typer.Option(
        "--strict/--no-strict", help="--image with an explicit reduced precision: stop when it disagrees "
                                     "with fp32 instead of falling back (image_model.strict_precision).",
        show_default=False)] = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    es_url: EsUrlOpt = None,
) -> None:
    """Search images by text, by image, or like an indexed image.

    Text is embedded by the text model deployed in Elasticsearch (nothing loads locally); an image is
    embedded locally with the CLIP image model.

    Examples:
      toolkit search "ein Hund im Schnee" -k 5 --filter label=dog
      toolkit search --image cat.jpg --collapse relation_id
      toolkit search "red car" --hybrid --show-request --dry-run
    """
    from toolkit.devtools import render
    from toolkit.search import SearchOptions, Step, search

    settings = settings_from(config=config, es_url=es_url, **{
        "index.alias": index, "image_model.precision": precision, "image_model.strict_precision": strict})
    options = SearchOptions(
        k=k, num_candidates=num_candidates, filters=tuple(filters or ()), min_similarity=min_similarity,
        min_score=min_score, collapse=collapse,
        fields=tuple(f.strip() for f in fields.split(",") if f.strip()) if fields else None,
        hybrid=hybrid, caption_weight=caption_weight, rrf=rrf)

    def show(step: Step) -> None:
        if not (show_request or dry_run):
            return
        text_out = f"# {step.comment}\n{render(step.request)}\n"
        if as_json:
            info(escape(text_out))  # stdout stays one JSON document; the query is data, not markup
        else:
            print_text(text_out)

    client = None
    if not dry_run:
        from toolkit.cluster import make_client

        client = make_client(settings)
    outcome = search(settings=settings, options=options, text=text, image=image, like=like,
                     index=index, client=client, on_step=show)
    if dry_run:
        if as_json:
            print_json({"requests": [_request_json(s.request) for s in outcome.steps],
                        "kind": outcome.kind, "mode": outcome.mode, "index": outcome.index})
        return
    if as_json:
        print_json(outcome.as_json())
        return
    _print_table(outcome, settings)


def _request_json(request: Any) -> dict[str, Any]:
    return {"method": request.method, "path": request.path, "params": dict(request.params),
            "body": request.body}


def _print_table(outcome: Any, settings: Any) -> None:
    from rich.table import Table
    from rich.text import Text

    from toolkit.cli.output import out, scrub

    result = outcome.result
    f = settings.fields
    n = len(result.hits)
    title = (f"{outcome.kind} search on {outcome.index} · {outcome.why} · {n} hit{'' if n == 1 else 's'} "
             f"({result.total} matched) · {result.took_ms} ms")
    # Text(...) everywhere: captions and ids are data, never rich markup.
    table = Table(title=Text(scrub(title)), title_justify="left")
    table.add_column("rank", justify="right")
    table.add_column("score", justify="right")
    table.add_column("id", overflow="fold")
    table.add_column("caption", overflow="fold")
    table.add_column("path or URL", overflow="fold")
    for rank, hit in enumerate(result.hits, start=1):
        score = "" if hit.score is None else f"{hit.score:.4f}"
        caption = str(hit.source.get(f.caption) or "")
        where = str(hit.source.get(f.path) or hit.source.get(f.url) or "")
        table.add_row(str(rank), score, Text(scrub(hit.id)), Text(scrub(caption)), Text(scrub(where)))
    out.print(table)

