"""``toolkit ingest`` when things go wrong: a full disk, SIGTERM and Ctrl-C mid-download, old failures files."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.cli.test_ingest_cmd import config  # noqa: F401 - the fixture
from tests.lib.ingest_helpers import good_images
from tests.lib.test_ingest_hostile import CAP_SECONDS, Trickle
from tests.lib.test_ingest_urls import ImageServer
from toolkit.cli import app
from toolkit.errors import ValidationError

runner = CliRunner()


@pytest.fixture
def images() -> Iterator[ImageServer]:
    server = ImageServer()
    yield server
    server.stop()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full")
def test_a_full_disk_for_failures_is_one_clear_error_with_the_items_listed(config: Path,  # noqa: F811
                                                                            tmp_path: Path) -> None:
    # Before: chained OSError tracebacks (ENOSPC at write, again at close) and no summary.
    good_images(tmp_path / "imgs", 2)
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"not an image")
    result = runner.invoke(app, ["ingest", str(tmp_path / "imgs"), "--failures-file", "/dev/full",
                                 "--config", str(config)])
    assert result.exit_code == ValidationError.exit_code, result.output
    assert "Traceback" not in result.output and "OSError" not in result.output
    assert "2 indexed" in result.stderr  # the summary
    assert "No space left on device" in result.stderr and "--failures-file" in result.stderr
    assert "broken.jpg" in result.stderr  # the failed item, listed since it is in no file


def _stop_with(sig: int, trickle: Trickle) -> None:
    main = threading.main_thread().ident
    assert main is not None

    def press() -> None:
        if trickle.started.wait(CAP_SECONDS):
            signal.pthread_kill(main, sig)

    threading.Thread(target=press, daemon=True).start()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_a_signal_during_a_slow_download_stops_with_a_summary_and_the_items_listed(
        config: Path, tmp_path: Path, images: ImageServer, sig: int, code: int) -> None:  # noqa: F811
    # Before: SIGTERM killed the run with nothing recorded; one Ctrl-C did not stop the downloads.
    trickle = Trickle()
    images.routes["/slow.jpg"] = trickle
    listing = tmp_path / "urls.txt"
    listing.write_text(f"{images.url}/slow.jpg\n")
    _stop_with(sig, trickle)
    result = runner.invoke(app, ["ingest", str(listing), "--json", "--config", str(config),
                                 "--failures-file", str(tmp_path / "f.jsonl")])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    summary = json.loads(result.stdout)
    assert (summary["seen"], summary["failed"], summary["complete"]) == (1, 1, False)
    [record] = [json.loads(line) for line in (tmp_path / "f.jsonl").read_text().splitlines()]
    assert record["stage"] == "not sent" and record["location"] == f"{images.url}/slow.jpg"
    assert trickle.ended.wait(CAP_SECONDS) and not trickle.capped


def test_retry_of_an_old_failures_file_says_relative_paths_were_resolved(
        config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    good_images(tmp_path / "run" / "imgs", 1)
    old = tmp_path / "run" / "old.jsonl"
    old.write_text(json.dumps({"location": "imgs/img000.jpg", "stage": "read", "reason": "x"}) + "\n")
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["ingest", "--retry-failures", str(old), "--config", str(config)])
    assert result.exit_code == 0, result.output
    assert "1 indexed" in result.stderr
    assert "1 relative paths" in result.stderr and str(tmp_path / "run") in result.stderr


def test_the_summary_shows_relative_paths_and_the_file_keeps_absolute_ones(
        config: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: F811
    monkeypatch.chdir(tmp_path)
    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "broken.jpg").write_bytes(b"not an image")
    result = runner.invoke(app, ["ingest", "imgs", "--config", str(config), "--failures-file", "f.jsonl"])
    assert result.exit_code != 0
    assert f"    {Path('imgs') / 'broken.jpg'}: " in result.stderr
    record: Any = json.loads((tmp_path / "f.jsonl").read_text())
    assert record["location"] == str(tmp_path / "imgs" / "broken.jpg")


def test_a_second_ctrl_c_while_stopping_is_absorbed_with_a_note(capfd: pytest.CaptureFixture[str]) -> None:
    # Before: the second Ctrl-C (pressed while the first one's cleanup ran) was a traceback.
    from toolkit.cli.ingest_cmd import _StopSignals

    main = threading.main_thread().ident
    assert main is not None
    with _StopSignals() as signals:
        with pytest.raises(KeyboardInterrupt):
            signal.pthread_kill(main, signal.SIGINT)
            for _ in range(1000):  # the handler runs between bytecodes
                pass
        signal.pthread_kill(main, signal.SIGINT)  # absorbed: no exception
        for _ in range(1000):
            pass
    assert signals.received == 2 and not signals.terminated
    assert "stopping: writing the failures file" in capfd.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored
