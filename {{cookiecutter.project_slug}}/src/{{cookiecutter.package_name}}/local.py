"""Local runner: the pipeline's three step scripts run as programs, no Docker, no AWS.

Each script file runs as `__main__` with its own command line and environment, as the
container would run it; they share this one Python process, so pandas and xgboost are
imported once rather than once per step.

The SageMaker container paths are mapped under the build directory (build/local/ by default):

    in SageMaker                          locally
    /opt/ml/processing/input              the data directory (data/)
    /opt/ml/processing/train, ...         build/local/train, validation, test
    SM_MODEL_DIR (/opt/ml/model)          build/local/training/model
    model.tar.gz in S3                    build/local/model/model.tar.gz
    /opt/ml/processing/evaluation         build/local/evaluation
    /opt/ml/processing/champion           build/local/champion (a copy of the champion)

The data directory plays the pipeline's InputDataUrl prefix: every CSV in it is part of the
table. The CLI then applies the pipeline's quality gate to the evaluation report
(`gate_failures`, the Condition step's three comparisons); build/local/report.html shows it.
"""

import json
import os
import runpy
import shutil
import sys
import tarfile
import time
from collections.abc import Callable
from pathlib import Path

from . import config
from .report import REPORT_FILE_NAME, render
from .steps import data_schema, evaluate, preprocess

STEPS_DIR = Path(__file__).resolve().parent / "steps"
DEFAULT_BUILD_DIR = Path("build", "local")


class StepFailedError(Exception):
    """A step script ended with a non-zero exit status (its own message is above)."""


class LocalRun:
    """What a local run leaves under build_dir, and how long each step took."""

    def __init__(self, build_dir: Path):
        self.build_dir = build_dir
        self.model_archive = build_dir / "model" / evaluate.MODEL_ARCHIVE_NAME
        self.evaluation_file = build_dir / "evaluation" / evaluate.EVALUATION_FILE_NAME
        self.report_file = build_dir / REPORT_FILE_NAME
        self.timings: dict[str, float] = {}

    def report(self) -> dict:
        """The evaluation report the evaluate step wrote."""
        return json.loads(self.evaluation_file.read_text())


def metric_value(report: dict, metric: str) -> float:
    """One metric's value from an evaluation report."""
    return float(report["binary_classification_metrics"][metric]["value"])


def gate_failures(report: dict, metric: str, threshold: float) -> list[str]:
    """What the pipeline's quality gate would refuse the model for (empty: it passes).

    The same three comparisons as the CheckModelQuality step, on the same report.
    """
    value = metric_value(report, metric)
    floors = report["quality_gate"][metric]
    failures = []
    if value < threshold:
        failures.append(f"it is below the threshold {threshold:.4f}")
    if value < floors["baseline_floor"]:
        failures.append(
            f"it does not beat a model that always answers the majority class: it needs"
            f" {floors['baseline_floor']:.4f}"
        )
    if value < floors["champion_floor"]:
        failures.append(
            f"it is worse than the production model: it needs {floors['champion_floor']:.4f}"
        )
    return failures


def run_script(script: Path, args: list[str], env: dict[str, str]) -> int:
    """Run a script file as __main__ with sys.argv and extra environment; its exit status.

    The script's directory comes first on sys.path, as `python3 script.py` puts it; the
    modules imported from there are forgotten afterwards, so that a neighbour's name
    (`inference`) never shadows an installed package for the rest of the process.
    """
    saved_argv, saved_env, saved_path = sys.argv, dict(os.environ), list(sys.path)
    saved_modules = set(sys.modules)
    sys.argv = [str(script), *args]
    sys.path.insert(0, str(script.parent))
    os.environ.update(env)
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exit_request:
        code = exit_request.code
        return code if isinstance(code, int) else (0 if code is None else 1)
    finally:
        sys.argv = saved_argv
        sys.path[:] = saved_path
        for name in set(sys.modules) - saved_modules:
            if Path(getattr(sys.modules[name], "__file__", None) or "/").parent == script.parent:
                del sys.modules[name]
        os.environ.clear()
        os.environ.update(saved_env)
    return 0


def package_model(model_dir: Path, archive: Path) -> None:
    """Tar the model directory's files the way a SageMaker training job does."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive, "w:gz") as tar:
        for path in sorted(model_dir.iterdir()):
            tar.add(path, arcname=path.name)


def options(values: dict) -> list[str]:
    """`--name value` for each item, as SageMaker passes hyperparameters and paths."""
    return [arg for name, value in values.items() for arg in (f"--{name}", str(value))]


def run_local_pipeline(
    data_dir: Path,
    build_dir: Path = DEFAULT_BUILD_DIR,
    echo: Callable[[str], None] = print,
    hyperparameters: dict | None = None,
    champion: Path | None = None,
    commit: str | None = None,
) -> LocalRun:
    """Preprocess, train and evaluate on the CSVs in data_dir; outputs go under build_dir.

    champion is a model.tar.gz the evaluate step compares the model with (it may be the
    previous run's model, under build_dir); commit names the code in the report.
    """
    data_dir, build_dir = Path(data_dir), Path(build_dir)
    champion_bytes = Path(champion).read_bytes() if champion else None
    # Stale splits or models from an earlier run must not leak into this one.
    shutil.rmtree(build_dir, ignore_errors=True)
    run = LocalRun(build_dir)
    champion_dir = build_dir / "champion"
    if champion_bytes is not None:
        champion_dir.mkdir(parents=True)
        (champion_dir / evaluate.MODEL_ARCHIVE_NAME).write_bytes(champion_bytes)
    splits = {name: build_dir / name for name in preprocess.SPLIT_FILE_NAMES}
    training_model_dir = build_dir / "training" / "model"

    def step(name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        started = time.perf_counter()
        exit_status = run_script(STEPS_DIR / f"{name}.py", args, env or {})
        run.timings[name] = time.perf_counter() - started
        if exit_status != 0:
            raise StepFailedError(f"the {name} step failed (exit status {exit_status})")
        echo(f"{name}: done in {run.timings[name]:.1f} s")

    split_dirs = {f"{name}-dir": path for name, path in splits.items()}
    step(
        "preprocess",
        options({"input-dir": data_dir, **split_dirs}) + preprocess.label_options(data_schema),
    )
    training_env = {
        "SM_CHANNEL_TRAIN": str(splits["train"]),
        "SM_CHANNEL_VALIDATION": str(splits["validation"]),
        "SM_MODEL_DIR": str(training_model_dir),
    }
    step("train", options(hyperparameters or {}), env=training_env)
    package_model(training_model_dir, run.model_archive)
    evaluate_options = {
        "model-dir": run.model_archive.parent,
        "test-dir": splits["test"],
        "output-dir": run.evaluation_file.parent,
        "champion-dir": champion_dir,
        "champion-url": champion or "",
        "baseline-margin": config.BASELINE_MARGIN,
        "champion-margin": config.CHAMPION_MARGIN,
    }
    step("evaluate", options(evaluate_options))
    run.report_file.write_text(
        render(
            run.report(),
            project=config.PROJECT_NAME,
            commit=commit or "not committed",
            metric=config.QUALITY_METRIC,
            threshold=config.QUALITY_THRESHOLD,
        )
    )
    return run
