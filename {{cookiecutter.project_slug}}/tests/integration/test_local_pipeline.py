"""`make local-pipeline` end to end: `python -m <package> local` in a fresh directory."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from {{ cookiecutter.package_name }} import config

PROJECT_ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "{{ cookiecutter.package_name }}"


def run_cli(cwd: Path, *argv: str):
    """`python -m <package> ...` in cwd, with src/ importable (as the Makefile sets it)."""
    return subprocess.run(
        [sys.executable, "-m", PACKAGE, *argv],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(PROJECT_ROOT / "src")},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_local_pipeline_writes_the_data_trains_and_passes_the_gate(tmp_path):
    result = run_cli(tmp_path, "local")
    assert result.returncode == 0, result.stderr
    assert f"Quality gate passed: {config.QUALITY_METRIC}" in result.stdout
    assert "Timing: preprocess" in result.stdout
    assert (tmp_path / "data" / "breast_cancer.csv").is_file()

    archive = tmp_path / "build" / "local" / "model" / "model.tar.gz"
    with tarfile.open(archive) as tar:
        assert tar.getnames() == ["xgboost-model"]
    report = json.loads(
        (tmp_path / "build" / "local" / "evaluation" / "evaluation.json").read_text()
    )
    value = report["binary_classification_metrics"][config.QUALITY_METRIC]["value"]
    assert value >= config.QUALITY_THRESHOLD
