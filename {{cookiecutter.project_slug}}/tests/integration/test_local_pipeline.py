"""`make local-pipeline` end to end: the command line's `local` in a fresh directory."""

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

from {{ cookiecutter.package_name }} import config, data

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# The package whose `python -m` is the project's command line.
CLI = "{{ cookiecutter.__ops_package_name }}"


def run_cli(cwd: Path, *argv: str):
    """`python -m <cli> ...` in cwd, with src/ importable (as the Makefile sets it)."""
    return subprocess.run(
        [sys.executable, "-m", CLI, *argv],
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
    assert (tmp_path / "data" / data.DATASET_FILE_NAME).is_file()

    build = tmp_path / "build" / "local"
    with tarfile.open(build / "model" / "model.tar.gz") as tar:
        names = set(tar.getnames())
    # The fitted transform and the inference code SageMaker runs (the model file is the
    # classifier module's own).
    assert {"transform.json", "code/inference.py", "code/classifier.py"} <= names
    report = json.loads((build / "evaluation" / "evaluation.json").read_text())
    metrics = report["binary_classification_metrics"]
    assert metrics[config.QUALITY_METRIC]["value"] >= config.QUALITY_THRESHOLD
    assert {"confusion_matrix", "receiver_operating_characteristic_curve"} <= set(metrics)
    assert "<svg" in (build / "report.html").read_text()
