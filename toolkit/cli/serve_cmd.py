"""``toolkit serve``: the search page in a browser (see ``toolkit.serve``).

Nothing heavy is imported here; the web packages load when the command runs, with an install hint
when they are missing.
"""

from __future__ import annotations

from typing import Annotated

import typer

from toolkit.cli import ConfigOpt, EsUrlOpt, app, settings_from
from toolkit.cli.output import info, register_secrets
from toolkit.errors import ToolkitError

ENV_TOKEN = "TOOLKIT_SERVE_TOKEN"  # the same name as toolkit.serve.ENV_TOKEN (kept here: no import at load)


@app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(
        "--host", help="Address to listen on. Anything but loopback (127.0.0.1, ::1, localhost) needs a token.")]
        = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port to listen on.", min=0, max=65535)] = 8080,
    index: Annotated[str | None, typer.Option("--index", help="Alias or index to search (index.alias).",
                                              show_default=False)] = None,
    token: Annotated[str | None, typer.Option(
        "--token", envvar=ENV_TOKEN, show_envvar=True, show_default=False,
        help="Access token every request must carry (16+ characters); prefer the environment variable, "
             "a flag shows in the process list. Open the page as /?token=TOKEN once (it becomes a cookie); "
             "API clients send 'Authorization: Bearer TOKEN'.")] = None,
    config: ConfigOpt = None,
    es_url: EsUrlOpt = None,
) -> None:
    """Serve a search page: text, image upload, image URL and "more like this", with thumbnails.

    The page sends the same requests as `toolkit search` (each result shows it in Kibana Dev Tools form).
    Elasticsearch credentials stay in this process; the browser never sees them.

    Examples:
      toolkit serve                      # http://127.0.0.1:8080/
      TOOLKIT_SERVE_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(24))') \\
        toolkit serve --host 0.0.0.0 --port 8080
    """
    if token is not None:
        register_secrets([token])
    settings = settings_from(config=config, es_url=es_url, **{"index.alias": index})
    try:
        from toolkit.serve import serve
    except ImportError as exc:
        raise ToolkitError(f"toolkit serve needs the web packages ({exc.name} is missing)",
                           hint="pip install 'toolkit[serve]'") from exc

    def ready(url: str) -> None:
        where = f"{url}?token=<your token>" if token else url
        from rich.markup import escape

        info(escape(f"serving the search page on {where} for index {index or settings.index.alias} (Ctrl-C stops)"))

    serve(settings, host=host, port=port, token=token, index=index, on_ready=ready)
