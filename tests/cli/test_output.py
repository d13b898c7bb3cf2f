"""The one place errors become words: brackets survive, secrets do not."""

from __future__ import annotations

import pytest

from toolkit.cli import output
from toolkit.errors import NotFound


def test_error_keeps_bracketed_names_and_shows_the_fix(capsys: pytest.CaptureFixture[str]) -> None:
    output.print_error(NotFound("Trained model [tiny-text] is not deployed", hint="run [b]toolkit deploy-model"))
    err = capsys.readouterr().err
    assert "Trained model [tiny-text] is not deployed" in err
    assert "fix: run [b]toolkit deploy-model" in err


def test_registered_secrets_are_scrubbed_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    output.register_secrets(["s3cr3t-value"])
    output.print_error(NotFound("auth header was ApiKey s3cr3t-value", hint="not s3cr3t-value"))
    output.print_text("token s3cr3t-value")
    captured = capsys.readouterr()
    assert "s3cr3t-value" not in captured.err + captured.out
    assert "********" in captured.err and "********" in captured.out
