"""The ``toolkit`` command line: thin Typer commands over the library.

Commands parse options, resolve settings and call one library function. Expected failures are
``ToolkitError``s; ``ToolkitGroup.invoke`` is the one place that turns them into a message with the
fix and the error's own exit code (see ``toolkit.errors``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from toolkit.cli.output import print_error, register_secrets
from toolkit.errors import ToolkitError
from toolkit.settings import Settings, load_settings


class ToolkitGroup(TyperGroup):
    """Turns library errors into one-line messages and exit codes, for every command."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ToolkitError as exc:
            print_error(exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            from toolkit.cli.output import err

            err.print("interrupted")
            raise typer.Exit(130) from None


app = typer.Typer(
    cls=ToolkitGroup,
    help="Elasticsearch-native text-to-image and image-to-image search with CLIP.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


# Options every command that talks to the cluster takes (declared once, used by keyword).
ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", help="YAML settings file (default: ./toolkit.yaml; env TOOLKIT_CONFIG).")]
EsUrlOpt = Annotated[str | None, typer.Option(
    "--es-url", help="Elasticsearch URL (env ES_URL). Credentials come from ES_API_KEY or "
                     "ES_USERNAME/ES_PASSWORD (or the config file), never from flags.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output (documented in the README).")]


def settings_from(*, config: Path | None = None, es_url: str | None = None, **overrides: Any) -> Settings:
    """Resolve settings for a command: its flags > env > YAML > defaults; registers secrets for scrubbing.

    ``overrides`` are dotted setting keys (``index.alias``); ``None`` means "flag not given".
    """
    merged = {"elasticsearch.url": es_url, **overrides}
    settings = load_settings(config_path=config, overrides={k: v for k, v in merged.items() if v is not None})
    register_secrets(settings.secrets())
    return settings


def main() -> None:
    """Console-script entry point."""
    app()


# Command modules register themselves on ``app`` (one line each, so adding a command touches one line).
from toolkit.cli import config_cmd  # noqa: E402,F401,I001
from toolkit.cli import deploy_cmd  # noqa: E402,F401
from toolkit.cli import devtools_cmd  # noqa: E402,F401
from toolkit.cli import doctor_cmd  # noqa: E402,F401
from toolkit.cli import ingest_cmd  # noqa: E402,F401
from toolkit.cli import search_cmd  # noqa: E402,F401
from toolkit.cli import setup_cmd  # noqa: E402,F401
from toolkit.cli import smoke_cmd  # noqa: E402,F401
from toolkit.cli import quickstart_cmd  # noqa: E402,F401
