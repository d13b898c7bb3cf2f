"""The ``toolkit`` command line: thin Typer commands over the library.

Commands parse options, resolve settings and call one library function. Expected failures are
``ToolkitError``s; ``ToolkitGroup.invoke`` is the one place that turns them into a message with the
fix and the error's own exit code (see ``toolkit.errors``).
"""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from toolkit.cli.output import output_error, print_error, print_unexpected, register_secrets, scrub
from toolkit.errors import ToolkitError
from toolkit.settings import ENV_API_KEY, ENV_PASSWORD, ENV_URL, ENV_USERNAME, Settings, load_settings, secret_forms


def _refuse_non_finite(ctx: Any) -> None:
    """A float option or argument given ``nan`` or ``inf`` is a usage error naming it (they are not JSON)."""
    for param in ctx.command.params:
        value = ctx.params.get(param.name)
        for v in value if isinstance(value, list | tuple) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                raise typer.BadParameter(f"{v!r} is not a finite number", ctx=ctx, param=param)


def _finite_floats(command: Any) -> None:
    """Make ``command`` (and its subcommands) check its parsed float values before it runs."""
    if getattr(command, "_toolkit_finite", False):
        return
    command._toolkit_finite = True
    plain_invoke = command.invoke

    def invoke(ctx: Any) -> Any:
        _refuse_non_finite(ctx)
        return plain_invoke(ctx)

    command.invoke = invoke
    for sub in (getattr(command, "commands", None) or {}).values():
        _finite_floats(sub)


_OUTPUT_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO)


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not complain again."""
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (a test runner's buffer): nothing left to flush


def _register_env_secrets() -> None:
    """Secrets from the environment are scrubbed even when settings fail to resolve."""
    env = os.environ
    register_secrets(secret_forms(api_key=env.get(ENV_API_KEY), username=env.get(ENV_USERNAME),
                                  password=env.get(ENV_PASSWORD), url=env.get(ENV_URL)))


class ToolkitGroup(TyperGroup):
    """Turns library errors into one-line messages and exit codes, for every command.

    It is also the last resort: any other exception is printed with its traceback scrubbed of every
    known secret (exit 1), and click's usage errors have the user's text escaped.
    """

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None:
            _finite_floats(command)
        return name, command, rest

    def invoke(self, ctx: Any) -> Any:
        _register_env_secrets()
        try:
            return super().invoke(ctx)
        except ToolkitError as exc:
            print_error(exc)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            from toolkit.cli.output import err

            err.print("interrupted")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort):
            raise
        except BrokenPipeError:
            # stdout went away (`| head`): stop quietly, as a killed-by-SIGPIPE program would.
            _silence_stdout()
            raise typer.Exit(141) from None
        except typer.TyperException as exc:
            # Usage errors quote what the user typed (an option value, a file name): scrub it.
            if isinstance(getattr(exc, "message", None), str):
                exc.message = scrub(exc.message)
            raise
        except OSError as exc:
            if exc.errno in _OUTPUT_ERRNOS and exc.filename is None:
                # A console write (a table, a progress bar) to a full disk or /dev/full.
                error = output_error(exc)
                print_error(error)
                raise typer.Exit(error.exit_code) from None
            print_unexpected(exc)
            raise typer.Exit(1) from None
        except Exception as exc:
            print_unexpected(exc)
            raise typer.Exit(1) from None


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
    from toolkit.cli.output import install_last_resort_hooks

    install_last_resort_hooks()
    app()


# Command modules register themselves on ``app`` (one line each, so adding a command touches one line).
from toolkit.cli import config_cmd  # noqa: E402,F401,I001
from toolkit.cli import deploy_cmd  # noqa: E402,F401
from toolkit.cli import devtools_cmd  # noqa: E402,F401
from toolkit.cli import doctor_cmd  # noqa: E402,F401
from toolkit.cli import eval_cmd  # noqa: E402,F401
from toolkit.cli import ingest_cmd  # noqa: E402,F401
from toolkit.cli import migrate_cmd  # noqa: E402,F401
from toolkit.cli import search_cmd  # noqa: E402,F401
from toolkit.cli import serve_cmd  # noqa: E402,F401
from toolkit.cli import setup_cmd  # noqa: E402,F401
from toolkit.cli import smoke_cmd  # noqa: E402,F401
from toolkit.cli import quickstart_cmd  # noqa: E402,F401
