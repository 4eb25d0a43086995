"""Measure what the design sets targets for, on a default bake (run by `make bench`).

Prints, each beside the figure it replaces (measured before the change that moved it):
- the bake;
- a first run: the template's `make demo` from a fresh copy, and a bake's `make install`;
- `make install FOR=<targets>` for each CodeBuild action: packages, venv and uv cache size,
  time with an empty uv cache (cold: a new CodeBuild cache) and with a filled one (warm),
  beside the old recipe every action used to run, timed the same way (downloads from the
  package index; --no-install skips this part);
- the baked suites and the local pipeline in the repo's own venv, with the bytecode `make
  install` compiles and with the bytecode removed (these machines set
  PYTHONDONTWRITEBYTECODE=1, so nothing is compiled at import).
Each timing is the median of --repeat runs (installs: of --install-repeat runs, one by default,
as each cold install downloads everything again). Exits 1 when a target is missed, so a regression
shows in the output rather than in a timed test.
"""

import argparse
import contextlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]

# (CodeBuild action, the targets its buildspec runs)
ACTIONS = [
    ("Build (lint, unit tests, definition)", "ci-build"),
    ("Train (upsert, start, wait)", "pipeline-run"),
    ("Deploy: stage configuration", "stage-config"),
    # DeployProd (FOR=deploy-prod) installs the same groups as TestStaging.
    ("TestStaging, DeployProd", "test-endpoint"),
]
# What every action ran before the dependency groups (the old `make install` recipe): the
# whole dev group, resolved without a lock, no bytecode. Timed side by side with the new one.
BEFORE_ACTION = ("before: every action, whole dev group", None)
BEFORE_RECIPE = [
    ["python3", "-m", "venv", ".venv"],
    [".venv/bin/pip", "install", "--quiet", "uv"],
    [".venv/bin/uv", "sync", "--group", "dev", "--inexact"],
]
# (what, make target, target seconds or None, seconds before: without bytecode, with it)
SUITES = [
    ("make test-unit (2 workers)", "test-unit", 10.0, (25.0, 11.8)),
    ("make local-pipeline", "local-pipeline", 3.0, (6.2, 2.5)),
    ("make pipeline-definition", "pipeline-definition", None, (None, None)),
    ("make test-integration (2 workers)", "test-integration", None, (None, None)),
]
BAKE_TARGET, BAKE_BEFORE = 0.5, None
UNIT_AND_INTEGRATION_TARGET = 45.0
# A user's first run, with the machine's warm package caches: the template's `make demo` from
# a fresh copy (its venv included), and a bake's whole `make install` (every group).
DEMO_TARGET, DEMO_BEFORE = 60.0, 38.9
INSTALL_TARGET, INSTALL_BEFORE = 45.0, None
TEMPLATE_IGNORED = shutil.ignore_patterns(".venv", "build", ".git", ".pytest_cache", ".ruff_cache")


def run_timed(argv: list[str], cwd: Path, env: dict | None = None) -> tuple[float, str]:
    """Seconds one command takes, and its output; raises (with the output) if it fails."""
    start = time.perf_counter()
    result = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if result.returncode:
        output = result.stdout[-3000:] + result.stderr[-3000:]
        raise SystemExit(f"{' '.join(argv)} failed:\n{output}")
    return elapsed, result.stdout


def timed(argv: list[str], cwd: Path, env: dict | None = None) -> float:
    """Seconds one command takes; raises (with its output) if it fails."""
    return run_timed(argv, cwd, env)[0]


def median_of(repeat: int, measure) -> float:
    """The median of `repeat` calls of measure()."""
    return statistics.median(measure() for _ in range(repeat))


@contextlib.contextmanager
def quiet_stdout() -> Iterator[None]:
    """Send what this process and its children write to stdout to /dev/null."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as null:
        os.dup2(null.fileno(), 1)
    try:
        yield
    finally:
        os.dup2(saved, 1)
        os.close(saved)


def bake(output_dir: Path) -> tuple[float, Path]:
    """Seconds one default bake takes, and the project it made."""
    start = time.perf_counter()
    with quiet_stdout():  # the post-generation hook's "Next:" lines
        project = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(output_dir)))
    return time.perf_counter() - start, project


def size_mb(directory: Path) -> float:
    """The size of the files under a directory, in MB (links not followed)."""
    total = sum(p.lstat().st_size for p in directory.rglob("*") if p.is_file())
    return total / 1e6


def installed_packages(project: Path) -> int:
    """How many distributions the project's .venv holds (pip and uv excluded)."""
    site = next((project / ".venv" / "lib").glob("python*/site-packages"))
    names = {p.name.split("-")[0].lower() for p in site.glob("*.dist-info")}
    return len(names - {"pip", "uv"})


def measure_installs(root: Path, source: Path, repeat: int) -> Iterator[tuple]:
    """(action, targets, packages, venv MB, uv cache MB, cold s, warm s) for each action."""
    for number, (action, targets) in enumerate([*ACTIONS, BEFORE_ACTION]):
        cold, warm, cache_mb = [], [], 0.0
        for attempt in range(repeat):
            cache = root / f"uv-cache-{number}-{attempt}"
            env = {**os.environ, "UV_CACHE_DIR": str(cache), "PIP_NO_CACHE_DIR": "1"}
            for label, kind in (("cold", cold), ("warm", warm)):
                project = root / f"install-{number}-{attempt}-{label}" / source.name
                shutil.copytree(source, project, symlinks=True)
                if targets is None:
                    (project / "uv.lock").unlink()
                    kind.append(sum(timed(argv, project, env) for argv in BEFORE_RECIPE))
                else:
                    argv = ["make", "--no-print-directory", "install", f"FOR={targets}"]
                    kind.append(timed(argv, project, env))
            cache_mb = size_mb(cache)
            shutil.rmtree(cache, ignore_errors=True)
        yield (
            action,
            targets,
            installed_packages(project),
            size_mb(project / ".venv"),
            cache_mb,
            statistics.median(cold),
            statistics.median(warm),
        )


def demo_seconds(root: Path, attempt: int) -> float:
    """Seconds `make demo` takes in a fresh copy of the template (no venv yet)."""
    copy = root / f"template-{attempt}"
    shutil.copytree(TEMPLATE, copy, ignore=TEMPLATE_IGNORED)
    return timed(["make", "--no-print-directory", "demo"], copy)


def install_seconds(root: Path, source: Path, attempt: int) -> float:
    """Seconds a bake's `make install` (every group, bytecode compiled) takes from scratch."""
    project = root / f"first-install-{attempt}" / source.name
    shutil.copytree(source, project, symlinks=True)
    return timed(["make", "--no-print-directory", "install"], project)


def remove_bytecode(project: Path) -> None:
    """Delete every compiled file of the project's .venv and sources."""
    for cache_dir in list(project.rglob("__pycache__")):
        shutil.rmtree(cache_dir)


def main(argv: list[str] | None = None) -> int:
    """Run every measure and print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per timing (median)")
    parser.add_argument(
        "--install-repeat", type=int, default=1, help="runs per install timing (median)"
    )
    parser.add_argument("--no-install", action="store_true", help="skip the install timings")
    args = parser.parse_args(argv)
    missed = 0

    def report(what: str, seconds: float, target: float | None, before: float | None) -> None:
        nonlocal missed
        ok = target is None or seconds <= target
        missed += not ok
        limit = f"target <= {target:g} s" if target else ""
        was = f"was {before:g} s" if before else ""
        verdict = "" if target is None else ("ok" if ok else "MISSED")
        print(f"  {what:<44} {seconds:7.2f} s  {was:<12} {limit:<16} {verdict}")

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        print(
            f"Medians of {args.repeat} runs (installs: {args.install_repeat}); "
            f"load average {os.getloadavg()[0]:.1f} at start."
        )
        bakes = [bake(root / f"bake-{i}") for i in range(max(args.repeat, 5))]
        report(
            "bake (cookiecutter, defaults)",
            statistics.median(t for t, _ in bakes),
            BAKE_TARGET,
            BAKE_BEFORE,
        )
        source = bakes[0][1]
        print("\nA first run (warm package caches):")
        report(
            "make demo (template, fresh copy)",
            statistics.median(demo_seconds(root, i) for i in range(args.repeat)),
            DEMO_TARGET,
            DEMO_BEFORE,
        )
        report(
            "make install (bake, every group)",
            statistics.median(install_seconds(root, source, i) for i in range(args.repeat)),
            INSTALL_TARGET,
            INSTALL_BEFORE,
        )

        if not args.no_install:
            print("\nmake install FOR=<targets> per CodeBuild action (uv, locked, bytecode):")
            print(
                f"  {'action':<38} {'packages':>8} {'venv MB':>8} {'cache MB':>8} "
                f"{'cold s':>7} {'warm s':>7}"
            )
            for row in measure_installs(root, source, args.install_repeat):
                action, _, packages, venv_mb, cache_mb, cold, warm = row
                print(
                    f"  {action:<38} {packages:>8} {venv_mb:>8.0f} {cache_mb:>8.0f} "
                    f"{cold:>7.1f} {warm:>7.1f}"
                )

        project = bakes[1][1]
        timed(["make", "--no-print-directory", "install"], project)
        print("\nIn the repo's own venv (2 cores), with bytecode compiled at install:")
        medians = {}
        for what, target, limit, (_, before) in SUITES:
            argv = ["make", "--no-print-directory", target]
            runs = [run_timed(argv, project) for _ in range(args.repeat)]
            passed = re.search(r"(\d+) passed", runs[-1][1])
            label = f"{what}, {passed[1]} tests" if passed else what
            medians[target] = statistics.median(seconds for seconds, _ in runs)
            report(label, medians[target], limit, before)
        report(
            "unit + integration",
            medians["test-unit"] + medians["test-integration"],
            UNIT_AND_INTEGRATION_TARGET,
            None,
        )
        remove_bytecode(project)
        print("The same without bytecode (every import compiles, nothing is written):")
        env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}
        for what, target, _, (before, _) in SUITES:
            argv = ["make", "--no-print-directory", target]
            report(
                what,
                median_of(args.repeat, lambda argv=argv: timed(argv, project, env)),
                None,
                before,
            )
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
