"""A user's own table: switch the loader and the schema of a bake, change nothing else.

The test writes another table (other column names, categorical columns with commas and
spaces in their values, a text label whose positive class is not first), points the bake's
`load_dataset()` at it, declares it in `steps/data_schema.py`, and expects the baked unit
and integration suites and the whole offline flow (`make rehearse`) to pass as they are. The
rehearsal engine's own tests (tests/rehearsal/: rehearsals of repositories broken on purpose
among them) read no data: they run on the default and GitHub bakes.
"""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import DEFAULT, bake, make, run

TABLE_ROWS = 900
SCHEMA = """FEATURES = {
    "annual_income_k": NUMERIC,
    "debt_to_income": NUMERIC,
    "home_region": CATEGORICAL,
    "employment": CATEGORICAL,
    "has_guarantor": CATEGORICAL,
}
# The label column and its two values: the model scores the probability of POSITIVE_CLASS.
LABEL = "loan_outcome"
POSITIVE_CLASS = "defaulted"
NEGATIVE_CLASS = "repaid"
"""
LOADER = '''def load_dataset() -> pd.DataFrame:
    """The table the model learns from: the loan book export next to the repository's data."""
    return pd.read_csv(Path(__file__).resolve().parents[2] / "exports" / "loans.csv.gz")
'''
REGIONS = {"north, upland": 0.8, "south coast": -0.4, "east": 0.0, "west": -0.6}
EMPLOYMENT = {"salaried": -0.7, "self-employed": 0.5, "contract": 0.3, "none": 1.2}


def loan_table(rows: int = TABLE_ROWS, seed: int = 11) -> pd.DataFrame:
    """A seeded loan table: an id, two numeric and three categorical features, a text label."""
    rng = np.random.RandomState(seed)
    region = rng.choice(list(REGIONS), size=rows)
    employment = rng.choice(list(EMPLOYMENT), size=rows)
    guarantor = rng.choice(["Y", "N"], size=rows)
    income = np.round(rng.lognormal(3.8, 0.5, size=rows), 1)
    debt = np.round(rng.uniform(0, 0.9, size=rows), 3)
    logit = (
        -0.8
        + np.vectorize(REGIONS.get)(region)
        + np.vectorize(EMPLOYMENT.get)(employment)
        + np.where(guarantor == "Y", -0.9, 0.3)
        - 0.025 * (income - 45)
        + 4.0 * (debt - 0.45)
    )
    defaulted = rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "applicant_ref": [f"L-{number}" for number in range(rows)],
            "home_region": region,
            "annual_income_k": income,
            "employment": employment,
            "debt_to_income": debt,
            "has_guarantor": guarantor,
            "loan_outcome": np.where(defaulted, "defaulted", "repaid"),
        }
    )


def replace_once(path: Path, pattern: str, replacement: str) -> None:
    """Replace the one match of a multi-line pattern in a file."""
    text, count = re.subn(pattern, lambda _: replacement, path.read_text(), flags=re.S | re.M)
    assert count == 1, f"{pattern!r} in {path}"
    path.write_text(text)


@pytest.fixture(scope="module")
def own_data_bake(tmp_path_factory) -> Path:
    """The default bake with the loader and the schema switched to the loan table."""
    project = bake(tmp_path_factory.mktemp("own-data"), **DEFAULT)
    package = next(project.glob("src/*/steps")).parent
    (project / "exports").mkdir()
    # Compressed, as exports often are (and the rehearsal copies no *.csv file).
    loan_table().to_csv(project / "exports" / "loans.csv.gz", index=False)
    replace_once(
        package / "steps" / "data_schema.py", r"^FEATURES = \{.*?^NEGATIVE_CLASS = .*?\n", SCHEMA
    )
    replace_once(package / "data.py", r"^def load_dataset\(\).*?\n\n\n", LOADER + "\n\n")
    assert "from pathlib import Path" in (package / "data.py").read_text()
    # Committed, as a user would before pushing: the rehearsal builds commits.
    identity = ["-c", "user.name=Dev", "-c", "user.email=dev@example.com"]
    for command in (["git", "add", "--all"], ["git", *identity, "commit", "-q", "-m", "Loans"]):
        result = run(command, project)
        assert result.returncode == 0, result.stderr
    return project


@pytest.mark.parametrize("target", ["test-unit", "test-integration"])
def test_the_suites_pass_with_only_the_loader_and_the_schema_changed(own_data_bake, target):
    result = make(target, own_data_bake, env={"WORKERS": "0"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", result.stdout)


def test_the_whole_flow_rehearses_with_the_loan_table(own_data_bake):
    result = make("rehearse", own_data_bake)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"^  Total +\S+ s +passed$", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^IAM: \d+ calls checked .*; 0 denied", result.stdout, re.MULTILINE)


def test_the_local_pipeline_learns_the_loan_table(own_data_bake):
    result = make("local-pipeline", own_data_bake)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Quality gate passed" in result.stdout
    data_file = own_data_bake / "data" / "dataset.csv"
    assert pd.read_csv(data_file).columns.tolist() == loan_table().columns.tolist()
