"""The files a platform team uses as they are: docker-compose.yml and the GitHub workflow."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="Debian's docker-compose is not installed (.ci/run installs it)")
def test_compose_file_validates() -> None:
    env = {**os.environ, "ELASTIC_PASSWORD": "x" * 12, "KIBANA_PASSWORD": "y" * 12}
    result = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            env=env, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr


@pytest.mark.skipif(shutil.which("docker-compose") is None,
                    reason="Debian's docker-compose is not installed (.ci/run installs it)")
def test_compose_refuses_to_start_without_passwords() -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("ELASTIC_PASSWORD", "KIBANA_PASSWORD")}
    result = subprocess.run(["docker-compose", "-f", str(ROOT / "docker-compose.yml"), "config", "-q"],
                            env=env, capture_output=True, text=True, cwd=ROOT)
    assert result.returncode != 0
    assert "ELASTIC_PASSWORD" in result.stderr


def test_compose_runs_a_secured_trial_cluster_on_loopback_only() -> None:
    services = compose()["services"]
    es_env = services["elasticsearch"]["environment"]
    assert "xpack.license.self_generated.type=trial" in es_env
    assert "xpack.security.enabled=true" in es_env
    assert services["elasticsearch"]["image"].endswith(":${ES_VERSION:-9.2.1}")
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond loopback"
    assert "healthcheck" in services["elasticsearch"] and "healthcheck" in services["kibana"]


@pytest.mark.skipif(shutil.which("actionlint") is None,
                    reason="actionlint is not installed (pip install -e '.[dev]' installs it)")
def test_workflow_passes_actionlint() -> None:
    result = subprocess.run(["actionlint", str(ROOT / ".github" / "workflows" / "ci.yml")],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_runs_real_cluster_tests_on_two_releases() -> None:
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    real = workflow["jobs"]["real-cluster"]
    versions = [entry["es"] for entry in real["strategy"]["matrix"]["include"]]
    assert len(versions) >= 2 and all(v.startswith("9.") for v in versions)
    steps = " ".join(step.get("run", "") for step in real["steps"])
    assert "-m real_cluster" in steps and "toolkit smoke" in steps


def test_the_workflow_tests_every_python_the_package_declares() -> None:
    """requires-python and the workflow's Python matrix name the same versions (a user on 3.13 is
    tested, and no declared version goes untested)."""
    import re
    import tomllib

    spec = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    low = re.search(r">=\s*3\.(\d+)", spec)
    high = re.search(r"<\s*3\.(\d+)", spec)
    assert low and high, spec
    declared = [f"3.{minor}" for minor in range(int(low.group(1)), int(high.group(1)))]
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "ci.yml").read_text())
    assert workflow["jobs"]["test"]["strategy"]["matrix"]["python"] == declared
    assert "3.12" in declared and "3.13" in declared
