"""Printing for the CLI: results on stdout, messages and progress on stderr, secrets scrubbed.

This is the one place text reaches the terminal. Everything printed, through ``out``/``err`` (tables,
progress bars, messages) or ``print_text``/``print_json``, is made safe here:

- every registered secret (and its ``ApiKey``/``Basic`` base64 forms) is replaced with a mask;
- control characters (ANSI escape sequences, carriage returns, C1 codes, bidi overrides) in file names,
  captions, cluster reasons and other data are shown escaped (``\\x1b``), so data cannot drive the
  terminal. The consoles' own styling is untouched.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
import traceback
import warnings
from collections.abc import Iterable
from typing import Any

from rich.console import Console, ConsoleOptions, RenderableType
from rich.errors import MarkupError
from rich.markup import escape
from rich.segment import Segment

from toolkit.errors import ToolkitError

MASK = "********"
_secrets: set[str] = set()

# C0 controls but tab and newline, DEL, C1 controls, and the Unicode bidi/line controls that reorder
# or break what the terminal shows ("Trojan source").
_CONTROL_RE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
# In JSON output C0 controls are already \u-escaped by json.dumps; the others are not.
_JSON_UNSAFE_RE = re.compile("[\x7f-\x9f\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escaped(match: re.Match[str]) -> str:
    code = ord(match.group(0))
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def escape_controls(text: str) -> str:
    """Control characters shown as escapes: ``"a\\x1b[2Jb"`` -> ``"a\\\\x1b[2Jb"`` (newlines and tabs kept)."""
    return _CONTROL_RE.sub(_escaped, text)


def register_secrets(values: Iterable[str]) -> None:
    """Remember secret values so nothing printed can contain them."""
    for value in values:
        for v in (value, value.strip()) if value else ():
            if len(v) >= 3:
                _secrets.add(v)


def scrub(text: str) -> str:
    """``text`` safe to print: every registered secret masked, control characters escaped."""
    text = str(text)
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return escape_controls(text)


class SafeConsole(Console):
    """A rich Console that scrubs the text of every segment it renders (not its own control codes)."""

    def render(self, renderable: RenderableType, options: ConsoleOptions | None = None) -> Iterable[Segment]:
        for segment in super().render(renderable, options):
            if segment.control or not segment.text:
                yield segment
            else:
                yield Segment(scrub(segment.text), segment.style, segment.control)


out = SafeConsole(soft_wrap=True, highlight=False)
err = SafeConsole(stderr=True, soft_wrap=True, highlight=False)


def _stdout(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        raise  # the reader went away (| head): the CLI stops quietly
    except OSError as exc:
        raise output_error(exc) from None


def output_error(exc: OSError) -> ToolkitError:
    """Writing the output failed (a full disk, ``> /dev/full``): say so, it is not a bug."""
    return ToolkitError(f"cannot write the output: {exc.strerror or exc}",
                        hint="check where stdout goes: a full disk, or a file that cannot grow")


def print_text(text: str) -> None:
    """Plain text to stdout, exactly (no markup), scrubbed."""
    _stdout(scrub(text) + ("" if text.endswith("\n") else "\n"))


def print_json(data: Any) -> None:
    """Machine output: one JSON document on stdout (secrets masked; controls stay \\u-escaped)."""
    text = json.dumps(data, indent=2, ensure_ascii=False, default=str)
    for secret in sorted(_secrets, key=len, reverse=True):
        # Mask the secret as JSON writes it (a quote or backslash in it is escaped there).
        text = text.replace(json.dumps(secret, ensure_ascii=False)[1:-1], MASK)
    text = _JSON_UNSAFE_RE.sub(lambda m: f"\\u{ord(m.group(0)):04x}", text)
    _stdout(text + "\n")


def info(message: str) -> None:
    """A message on stderr, in rich markup (callers escape data with ``rich.markup.escape``)."""
    text = scrub(message)
    try:
        err.print(text, markup=True)
    except MarkupError:
        # Data that was not escaped and holds a stray "[/]": print it as it is rather than fail.
        err.print(text, markup=False)


def print_error(exc: ToolkitError) -> None:
    """The one place an expected failure becomes words: the message, then the fix."""
    # Messages quote ES reasons such as "no such index [images]": escape them, or rich eats "[images]".
    err.print(f"[bold red]error:[/] {escape(scrub(exc.message))}", markup=True, highlight=False)
    if exc.hint:
        err.print(f"  [bold]fix:[/] {escape(scrub(exc.hint))}", markup=True, highlight=False)


def print_unexpected(exc: BaseException) -> None:
    """The last resort: an exception nobody expected, with its traceback (causes included), scrubbed."""
    details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    sys.stderr.write(scrub(details))
    sys.stderr.write(scrub(f"error: unexpected {type(exc).__name__}: {exc}\n"))
    sys.stderr.write("  fix: this is a bug in toolkit: please report it with the lines above "
                     "(secrets are masked)\n")
    sys.stderr.flush()


class _ScrubbingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """logging's last-resort handler (WARNING and up, to stderr), scrubbed like everything else."""

    def format(self, record: logging.LogRecord) -> str:
        return scrub(super().format(record))


def install_last_resort_hooks() -> None:
    """Route what Python prints by itself through ``scrub``: uncaught exceptions (also in threads),
    warnings (an ``ElasticsearchWarning`` quotes the cluster's text) and unhandled log records."""

    def excepthook(exc_type: type[BaseException], exc: BaseException, tb: Any) -> None:
        sys.stderr.write(scrub("".join(traceback.format_exception(exc_type, exc, tb))))

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is SystemExit or args.exc_value is None:
            return
        name = args.thread.name if args.thread else "?"
        sys.stderr.write(scrub(f"Exception in thread {name}:\n"
                               + "".join(traceback.format_exception(args.exc_type, args.exc_value,
                                                                    args.exc_traceback))))

    def showwarning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    file: Any = None, line: str | None = None) -> None:
        (file or sys.stderr).write(scrub(warnings.formatwarning(message, category, filename, lineno, line)))

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook
    warnings.showwarning = showwarning
    handler = _ScrubbingHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    logging.lastResort = handler
