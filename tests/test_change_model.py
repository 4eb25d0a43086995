"""Change the model: a default bake switched to scikit-learn exactly as its docs page says.

`docs/change-the-model.md` tells the user to replace `steps/classifier.py` with the module
the page shows (the execution role pulls either image). The test takes the module from the
page itself and expects the local pipeline, the unit tests of the model and the endpoint
contract tests (against the local server) to pass as they are.
"""

import re
import tarfile
from pathlib import Path

import pytest
from conftest import PYTHON, bake, make, run

PAGE = Path("docs", "change-the-model.md")
ROLE_TEMPLATE = Path("infra", "model-build-pipeline.yml")
XGBOOST_REPOSITORY = "repository/sagemaker-xgboost"
SCIKIT_LEARN_REPOSITORY = "repository/sagemaker-scikit-learn"
# The unit tests that train, save, load, serve or describe the model.
MODEL_UNIT_TESTS = ["test_steps.py", "test_inference.py", "test_server.py", "test_pipeline.py"]


def python_blocks(markdown: str) -> list[str]:
    """The code of every ```python block of a Markdown page."""
    return re.findall(r"^```python\n(.*?)^```$", markdown, flags=re.S | re.M)


@pytest.fixture(scope="module")
def switched_bake(tmp_path_factory) -> Path:
    """The default bake with the page's scikit-learn classifier in place."""
    project = bake(tmp_path_factory.mktemp("change-model"))
    page = (project / PAGE).read_text()
    (module,) = python_blocks(page)
    classifier = next(project.glob("src/*/steps/classifier.py"))
    assert 'FRAMEWORK = "xgboost"' in classifier.read_text()
    classifier.write_text(module)
    # The execution role already pulls either image: the page's one module is the change.
    role = (project / ROLE_TEMPLATE).read_text()
    assert XGBOOST_REPOSITORY in role and SCIKIT_LEARN_REPOSITORY in role
    return project


def test_the_page_module_is_the_scikit_learn_classifier_and_lint_clean(switched_bake):
    module = next(switched_bake.glob("src/*/steps/classifier.py"))
    text = module.read_text()
    assert 'FRAMEWORK = "sklearn"' in text and 'FRAMEWORK_VERSION = "1.9-0"' in text
    for command in (["ruff", "check", str(module)], ["ruff", "format", "--check", str(module)]):
        result = run(command, switched_bake)
        assert result.returncode == 0, result.stdout + result.stderr


def test_the_local_pipeline_trains_and_packages_the_scikit_learn_model(switched_bake):
    result = make("local-pipeline", switched_bake)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert re.search(r"^train: \d+ boosting iterations on", result.stdout, re.M), result.stdout
    assert "Quality gate passed" in result.stdout
    archive = switched_bake / "build" / "local" / "model" / "model.tar.gz"
    with tarfile.open(archive) as tar:
        names = set(tar.getnames())
        served = tar.extractfile("code/classifier.py").read().decode()
    assert {"model.joblib", "transform.json", "code/inference.py"} <= names
    assert "xgboost-model" not in names
    assert served == next(switched_bake.glob("src/*/steps/classifier.py")).read_text()


def test_the_model_unit_tests_pass_unchanged(switched_bake):
    files = [str(Path("tests", "unit", name)) for name in MODEL_UNIT_TESTS]
    result = run([PYTHON, "-m", "pytest", *files, "-q", "-p", "no:cacheprovider"], switched_bake)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", result.stdout)


def test_the_endpoint_contract_tests_pass_against_the_local_server(switched_bake):
    result = make("test-endpoint", switched_bake)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert re.search(r"\d+ passed", result.stdout)
