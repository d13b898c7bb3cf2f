"""``toolkit serve``: the bind rules, the token never printed, uvicorn's settings, and a real run."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

from toolkit.cli import app

pytest.importorskip("uvicorn")
ROOT = Path(__file__).resolve().parents[2]
TOKEN = "cli-token-" + "Hq3nV8xW2pLs"


def invoke(*args, env=None):
    return CliRunner().invoke(app, ["serve", *args], env=env)


@pytest.fixture
def ran(monkeypatch):
    """uvicorn's Server.run replaced: the config and sockets it was given are recorded."""
    import uvicorn

    calls = []

    def run(self, sockets=None):
        calls.append({"config": self.config, "sockets": [s.getsockname() for s in sockets or []]})

    monkeypatch.setattr(uvicorn.Server, "run", run)
    return calls


def test_other_hosts_need_a_token():
    result = invoke("--host", "0.0.0.0")
    assert result.exit_code == 4, result.output
    assert "--host 0.0.0.0 makes the page reachable from other machines, which needs an access token" in result.output
    assert "TOOLKIT_SERVE_TOKEN" in result.output and "--host 127.0.0.1" in result.output


def test_a_short_token_is_refused_without_showing_it():
    result = invoke("--host", "0.0.0.0", env={"TOOLKIT_SERVE_TOKEN": "hunter2xyz"})
    assert result.exit_code == 4, result.output
    assert "too short (10 characters; at least 16)" in result.output
    assert "hunter2xyz" not in result.output


def test_default_is_loopback_without_access_log(ran):
    result = invoke("--port", "0")
    assert result.exit_code == 0, result.output
    [call] = ran
    assert call["sockets"][0][0] == "127.0.0.1"
    assert call["config"].access_log is False          # it would print ?token= URLs
    assert f"serving the search page on http://127.0.0.1:{call['sockets'][0][1]}/ for index images" in result.output


def test_the_token_is_never_printed(ran):
    result = invoke("--port", "0", "--index", "photos", env={"TOOLKIT_SERVE_TOKEN": TOKEN})
    assert result.exit_code == 0, result.output
    assert "/?token=<your token> for index photos" in result.output
    assert TOKEN not in result.output


def test_a_taken_port_names_the_fix():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = invoke("--port", str(port))
    assert result.exit_code == 4, result.output
    assert f"cannot listen on 127.0.0.1:{port}" in result.output and "pick another --port" in result.output


def test_missing_web_packages_give_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "uvicorn", None)
    result = invoke("--port", "0")
    assert result.exit_code == 1, result.output
    assert "pip install 'toolkit[serve]'" in result.output


def test_help_names_the_security_defaults():
    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    assert "TOOLKIT_SERVE_TOKEN" in result.output and "loopback" in result.output


def test_toolkit_serve_answers_and_stops_on_ctrl_c(tmp_path):
    from tests.escluster.testing import running_cluster

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with running_cluster(license="basic", password="Cli-Serve-Pw-123") as es:
        env = {**os.environ, "ES_URL": es.url, "ES_USERNAME": "elastic", "ES_PASSWORD": "Cli-Serve-Pw-123",
               "PYTHONPATH": str(ROOT)}
        proc = subprocess.Popen([sys.executable, "-m", "toolkit", "serve", "--port", str(port)], cwd=tmp_path,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            body = None
            for _ in range(300):       # until it listens (a readiness wait, not a timed assertion)
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/config", timeout=5) as reply:
                        body = reply.read().decode()
                    break
                except OSError:
                    if proc.poll() is not None:
                        break
                    time.sleep(0.05)
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert body is not None, err
    assert '"index":"images"' in body and "toolkit setup" in body      # no index yet: the fix is named
    assert "Cli-Serve-Pw-123" not in body + out + err
    assert proc.returncode == 130, err          # Ctrl-C: the toolkit's exit code for an interrupt
    assert f"serving the search page on http://127.0.0.1:{port}/" in err
