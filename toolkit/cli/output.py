"""Printing for the CLI: results on stdout, messages and progress on stderr, secrets scrubbed."""

from __future__ import annotations

import json
import sys
from typing import Any

from rich.console import Console
from rich.markup import escape

from toolkit.errors import ToolkitError

MASK = "********"
_secrets: set[str] = set()

out = Console(soft_wrap=True, highlight=False)
err = Console(stderr=True, soft_wrap=True, highlight=False)


def register_secrets(values: list[str]) -> None:
    """Remember secret values so nothing printed can contain them."""
    _secrets.update(v for v in values if v and len(v) >= 3)


def scrub(text: str) -> str:
    """Replace every registered secret in ``text`` with a mask."""
    for secret in sorted(_secrets, key=len, reverse=True):
        text = text.replace(secret, MASK)
    return text


def print_text(text: str) -> None:
    """Plain text to stdout, exactly (no markup), scrubbed."""
    sys.stdout.write(scrub(text))
    if not text.endswith("\n"):
        sys.stdout.write("\n")
    sys.stdout.flush()


def print_json(data: Any) -> None:
    """Machine output: one JSON document on stdout."""
    print_text(json.dumps(data, indent=2, ensure_ascii=False, default=str))


def info(message: str) -> None:
    err.print(scrub(message), markup=True)


def print_error(exc: ToolkitError) -> None:
    """The one place an expected failure becomes words: the message, then the fix."""
    # Messages quote ES reasons such as "no such index [images]": escape them, or rich eats "[images]".
    err.print(f"[bold red]error:[/] {escape(scrub(exc.message))}", markup=True, highlight=False)
    if exc.hint:
        err.print(f"  [bold]fix:[/] {escape(scrub(exc.hint))}", markup=True, highlight=False)
