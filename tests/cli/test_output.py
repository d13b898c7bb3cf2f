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


def test_control_characters_in_data_cannot_drive_the_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    name = "evil\x1b[2J\x1b]0;pwned\x07\r\x9b31m\u202etxt.jpg"
    output.print_text(f"file {name}")
    output.print_error(NotFound(f"{name}: not an image", hint=f"remove {name}"))
    output.info(f"skipped {name}")
    output.print_json({"path": name})
    captured = capsys.readouterr()
    for stream in (captured.out, captured.err):
        assert not any(ch in stream for ch in "\x1b\x07\r\x9b\u202e"), repr(stream)
    assert "evil\\x1b[2J" in captured.out and "\\u202e" in captured.out
    assert '"path": "evil\\u001b[2J' in captured.out  # JSON stays valid JSON with the same value
    import json

    assert json.loads(captured.out[captured.out.index("{"):])["path"] == name


def test_rich_output_keeps_its_own_styling_but_escapes_data() -> None:
    import io

    from rich.progress import Progress

    buffer = io.StringIO()
    console = output.SafeConsole(file=buffer, force_terminal=True, width=80, highlight=False)
    console.print("[bold]ok[/] " + "cap\x1b[31mtion")
    with Progress(console=console, transient=False) as progress:
        progress.add_task("file \x1b]8;;http://x\x1b\\link", total=1)
    text = buffer.getvalue()
    assert "\x1b[1m" in text  # rich's bold
    assert "cap\\x1b[31mtion" in text and "\x1b[31mtion" not in text
    assert "\x1b]8;;" not in text


def test_json_output_masks_secrets_as_json_writes_them(capsys: pytest.CaptureFixture[str]) -> None:
    output.register_secrets(['pa"ss\\word-1'])
    output.print_json({"x": 'before pa"ss\\word-1 after'})
    assert "word-1" not in capsys.readouterr().out


def test_what_python_prints_by_itself_is_scrubbed_too(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    """Thread tracebacks, warnings and unhandled log records go through the same scrubber."""
    import logging
    import sys
    import threading
    import warnings

    for obj, name in ((sys, "excepthook"), (threading, "excepthook"), (warnings, "showwarning"),
                      (logging, "lastResort")):
        monkeypatch.setattr(obj, name, getattr(obj, name))
    output.register_secrets(["hook-s3cret"])
    output.install_last_resort_hooks()
    logging.lastResort.stream = sys.stderr  # the captured stream

    def boom() -> None:
        raise RuntimeError("thread saw hook-s3cret\x1b[2J")

    thread = threading.Thread(target=boom)
    thread.start()
    thread.join()
    warnings.showwarning(UserWarning("warned hook-s3cret"), UserWarning, "f.py", 1)
    logging.lastResort.handle(logging.LogRecord("x", logging.WARNING, "f", 1, "logged hook-s3cret", None, None))
    err = capsys.readouterr().err
    assert "RuntimeError" in err and "warned" in err and "logged" in err
    assert "hook-s3cret" not in err and "\x1b" not in err


def test_a_full_disk_on_stdout_is_an_error_not_a_bug(monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import sys

    from toolkit.errors import ToolkitError

    class Full:
        def write(self, text: str) -> int:
            raise OSError(errno.ENOSPC, "No space left on device")

        def flush(self) -> None:
            pass

    monkeypatch.setattr(sys, "stdout", Full())
    for call in (lambda: output.print_text("x"), lambda: output.print_json({"a": 1})):
        with pytest.raises(ToolkitError, match="cannot write the output: No space left on device"):
            call()
