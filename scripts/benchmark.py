"""Measure what the design sets targets for, on a default bake (run by `make bench`).

Targets: bake < 1 s; baked unit tests < 15 s; unit + integration < 60 s;
`make local-pipeline` < 15 s. Prints one line per figure, then exits 1 if a target is
missed, so a regression shows in the output rather than in a timed test.
"""

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cookiecutter.main import cookiecutter

TEMPLATE = Path(__file__).resolve().parents[1]
PYTHON = sys.executable

# (what, make target or None for the bake, target in seconds)
MEASURES = [
    ("bake (cookiecutter, defaults)", None, 1.0),
    ("make local-pipeline", "local-pipeline", 15.0),
    ("make pipeline-definition", "pipeline-definition", 15.0),
    ("make test-unit (2 workers)", "test-unit", 15.0),
    ("make test-integration (2 workers)", "test-integration", 45.0),
]


def timed_bake(output_dir: Path) -> tuple[float, Path]:
    """Seconds one default bake takes, and the project it made."""
    start = time.perf_counter()
    project = Path(cookiecutter(str(TEMPLATE), no_input=True, output_dir=str(output_dir)))
    return time.perf_counter() - start, project


def timed_make(target: str, project: Path) -> float:
    """Seconds one make target takes in the baked repo; raises if it fails."""
    start = time.perf_counter()
    subprocess.run(
        ["make", "--no-print-directory", target, f"PYTHON={PYTHON}"],
        cwd=project,
        check=True,
        capture_output=True,
    )
    return time.perf_counter() - start


def main() -> int:
    """Run every measure and print the table."""
    missed = 0
    with tempfile.TemporaryDirectory() as tmp:
        bakes = [timed_bake(Path(tmp) / str(i)) for i in range(5)]
        project = bakes[-1][1]
        for what, target, limit in MEASURES:
            seconds = (
                statistics.median(t for t, _ in bakes)
                if target is None
                else timed_make(target, project)
            )
            ok = seconds < limit
            missed += not ok
            print(f"{what:<38} {seconds:6.2f} s  (target < {limit:g} s) {'ok' if ok else 'MISSED'}")
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())
