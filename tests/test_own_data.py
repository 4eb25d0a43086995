"""A user's own table, set up as the generated README's "Your data" says, nothing else changed.

The test writes a table unlike the sample (other column names, five numeric and twelve
categorical features, values with commas and spaces, a text label whose positive class is
most of the rows), commits it under `exports/`, points the bake's `load_dataset()` at it,
declares it in `steps/data_schema.py`, sets the quality threshold to what the model reaches
on it, and expects `make check-data`, `make data SRC=`, the baked unit and integration
suites, the local pipeline and the whole offline flow (`make rehearse`, the champion gate
included) to pass as they are. The rehearsal engine's own
tests (tests/rehearsal/: rehearsals of repositories broken on purpose among them) read no
data: they run on the default and GitHub bakes.
"""

import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import DEFAULT, PYTHON, bake, make, run

TABLE_ROWS = 900
# Five numeric features and twelve categorical ones, most of them noise, as real exports are.
NUMERIC_FEATURES = ["annual_income_k", "debt_to_income", "loan_amount_k", "age", "open_lines"]
# Each categorical feature: its values and their effect on the label's log-odds.
CATEGORICAL_FEATURES = {
    "home_region": {"north, upland": 0.8, "south coast": -0.4, "east": 0.0, "west": -0.6},
    "employment": {"salaried": -0.7, "self-employed": 0.5, "contract": 0.3, "none": 1.2},
    "has_guarantor": {"Y": -0.9, "N": 0.3},
    "purpose": {"car": 0.0, "home improvement": 0.1, "debt consolidation": 0.4},
    "channel": {"branch": 0.0, "web": 0.0, "broker": 0.0},
    "marital_status": {"single": 0.0, "married": 0.0, "other": 0.0},
    "housing": {"own": -0.3, "rent": 0.2, "with family": 0.1},
    "education": {"secondary": 0.0, "tertiary": 0.0, "none": 0.0},
    "previous_default": {"yes": 1.0, "no": -0.2},
    "card_type": {"none": 0.0, "standard": 0.0, "gold": 0.0, "platinum": 0.0},
    "branch_code": {f"B{number:02d}": 0.0 for number in range(12)},
    "term": {"12 months": -0.2, "36 months": 0.0, "60 months": 0.3},
}
SCHEMA = (
    "FEATURES = {\n"
    + "".join(f'    "{name}": NUMERIC,\n' for name in NUMERIC_FEATURES)
    + "".join(f'    "{name}": CATEGORICAL,\n' for name in CATEGORICAL_FEATURES)
    + """}
# The label column and its two values: the model scores the probability of POSITIVE_CLASS.
LABEL = "loan_outcome"
POSITIVE_CLASS = "defaulted"
NEGATIVE_CLASS = "repaid"
"""
)
LOADER = '''def load_dataset() -> pd.DataFrame:
    """The table the model learns from: the loan book export committed under exports/."""
    return pd.read_csv(Path(__file__).resolve().parents[2] / "exports" / "loans.csv.gz")
'''
# The share of positive rows: the positive class is the majority, as in the data that let a
# model answering "yes" almost always pass an f1 gate.
POSITIVE_SHARE = 0.7


def loan_table(rows: int = TABLE_ROWS, seed: int = 11) -> pd.DataFrame:
    """A seeded loan table: an id, five numeric and twelve categorical features (values with
    commas and spaces), a text label whose positive class holds about 70 % of the rows."""
    rng = np.random.RandomState(seed)
    table = pd.DataFrame({"applicant_ref": [f"L-{number}" for number in range(rows)]})
    logit = np.zeros(rows)
    for name, effects in CATEGORICAL_FEATURES.items():
        table[name] = rng.choice(list(effects), size=rows)
        logit += table[name].map(effects).to_numpy()
    table["annual_income_k"] = np.round(rng.lognormal(3.8, 0.5, size=rows), 1)
    table["debt_to_income"] = np.round(rng.uniform(0, 0.9, size=rows), 3)
    table["loan_amount_k"] = np.round(rng.uniform(1, 50, size=rows), 1)
    table["age"] = rng.randint(18, 80, size=rows)
    table["open_lines"] = rng.poisson(3, size=rows)
    logit += -0.025 * (table["annual_income_k"] - 45) + 4.0 * (table["debt_to_income"] - 0.45)
    # Centre the log-odds so that POSITIVE_SHARE of the rows default.
    logit += np.log(POSITIVE_SHARE / (1 - POSITIVE_SHARE)) - np.median(logit)
    defaulted = rng.uniform(size=rows) < 1 / (1 + np.exp(-logit))
    table["loan_outcome"] = np.where(defaulted, "defaulted", "repaid")
    return table


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
    # Compressed, as exports often are; outside data/, whose CSVs git ignores.
    loan_table().to_csv(project / "exports" / "loans.csv.gz", index=False)
    replace_once(
        package / "steps" / "data_schema.py", r"^FEATURES = \{.*?^NEGATIVE_CLASS = .*?\n", SCHEMA
    )
    replace_once(package / "data.py", r"^def load_dataset\(\).*?\n\n\n", LOADER + "\n\n")
    assert "from pathlib import Path" in (package / "data.py").read_text()
    # The README's last step: the gate set to what the model reaches on this table, read
    # from the local pipeline's refusal (or its success), a little below it.
    config = package / "config.py"
    (metric,) = re.findall(r'^QUALITY_METRIC = "(\w+)"', config.read_text(), flags=re.M)
    result = make("local-pipeline", project)
    output = result.stdout + result.stderr
    found = re.search(rf"gate (?:failed|passed): {metric} ([0-9.]+)", output)
    assert found, output
    threshold = round(float(found[1]) - 0.05, 2)
    replace_once(config, r"^QUALITY_THRESHOLD = .*?$", f"QUALITY_THRESHOLD = {threshold}")
    shutil.rmtree(project / "build")
    # Committed, as a user would before pushing: the rehearsal builds commits.
    identity = ["-c", "user.name=Dev", "-c", "user.email=dev@example.com"]
    for command in (["git", "add", "--all"], ["git", *identity, "commit", "-q", "-m", "Loans"]):
        result = run(command, project)
        assert result.returncode == 0, result.stderr
    return project


@pytest.mark.parametrize("target", ["test-unit", "test-integration"])
def test_the_suites_pass_after_the_readme_steps(own_data_bake, target):
    result = make(target, own_data_bake, env={"WORKERS": "0"})
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", result.stdout)


def test_the_whole_flow_rehearses_with_the_loan_table(own_data_bake):
    result = make("rehearse", own_data_bake)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"^  Total +\S+ s +passed$", result.stdout, re.MULTILINE), result.stdout
    assert re.search(r"^IAM: \d+ calls checked .*; 0 denied", result.stdout, re.MULTILINE)


def test_check_data_accepts_the_loader_and_make_data_copies_a_file(own_data_bake):
    result = make("check-data", own_data_bake)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"load_dataset() gives {TABLE_ROWS} rows" in result.stdout
    source = own_data_bake / "exports" / "loans.csv.gz"
    result = run(["make", "data", f"SRC={source}", "PYTHON=" + PYTHON], own_data_bake)
    assert result.returncode == 0, result.stdout + result.stderr
    written = own_data_bake / "data" / "dataset.csv"
    assert pd.read_csv(written).equals(pd.read_csv(source))


def test_a_loader_whose_file_is_not_committed_fails_check_data_in_one_line(own_data_bake):
    exports = own_data_bake / "exports"
    hidden = exports.with_name("exports-hidden")
    exports.rename(hidden)
    try:
        result = make("check-data", own_data_bake)
    finally:
        hidden.rename(exports)
    assert result.returncode != 0
    (line,) = [line for line in result.stderr.splitlines() if "loans.csv.gz" in line]
    assert "commit the file" in line and "Traceback" not in result.stderr


def test_the_local_pipeline_learns_the_loan_table(own_data_bake):
    result = make("local-pipeline", own_data_bake)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "Quality gate passed" in result.stdout
    data_file = own_data_bake / "data" / "dataset.csv"
    assert pd.read_csv(data_file).columns.tolist() == loan_table().columns.tolist()
