"""``toolkit devtools``: every request the toolkit sends, as a Kibana Dev Tools console script."""

from __future__ import annotations

from typing import Annotated

import typer

from toolkit.cli import ConfigOpt, app, settings_from
from toolkit.cli.output import print_text


@app.command("devtools")
def devtools_command(
    text: Annotated[str, typer.Option("--text", help="Query text for the sample searches.")] =
        "a dog playing in the snow",
    image: Annotated[str | None, typer.Option(
        "--image", help="Embed this image (path or URL) for the image sample instead of a placeholder "
                        "vector (loads the image model).", show_default=False)] = None,
    like: Annotated[str, typer.Option("--like", help="Document id for the --like sample.")] = "DOC_ID",
    k: Annotated[int, typer.Option("-k", "--k", help="k of the sample searches.")] = 10,
    index: Annotated[str | None, typer.Option("--index", help="Alias (index.alias).",
                                              show_default=False)] = None,
    config: ConfigOpt = None,
) -> None:
    """Print, for pasting into Kibana Dev Tools, every request of setup, deploy-model and search.

    Sends nothing and needs no cluster. The model uploads (config, definition parts, vocabulary) are
    summarized as comment lines: toolkit deploy-model writes them.

    Example: toolkit devtools > toolkit.http
    """
    from toolkit.search import SearchOptions, devtools_script, embed_query_image

    settings = settings_from(config=config, **{"index.alias": index})
    vector = embed_query_image(image, settings) if image else None
    print_text(devtools_script(settings, text=text, image_vector=vector, image_label=image, like_id=like,
                               options=SearchOptions(k=k)))
