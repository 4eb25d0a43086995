"""Property-based tests over every free-text answer: each generated answer is either refused
cleanly (the hook names the variable, nothing is left behind) or bakes a whole repository
(every Python, YAML, JSON and TOML file parses and holds the answer as given, `make -n
bootstrap` works, every CloudFormation parameter default satisfies its AllowedPattern)
that never runs the answer.

cookiecutter renders answers given on the command line (or as extra context) as Jinja
templates before any hook sees them; the template README warns about it. Generated
answers therefore contain no Jinja delimiters: what is tested is the template, not that
cookiecutter behaviour.
"""

import ast
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import tomllib
import unicodedata
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import GITHUB_ANSWERS, PYTHON, TEMPLATE
from cookiecutter.exceptions import FailedHookException
from cookiecutter.generate import generate_context
from cookiecutter.main import cookiecutter
from cookiecutter.prompt import prompt_for_config
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# Each payload would leave this file behind if any generated file ran it.
CANARY = "answer-ran-as-code"
PAYLOADS = (
    f'"+__import__("os").system("touch {CANARY}")+"',
    f"'+__import__('os').system('touch {CANARY}')+'",
    f'"""+__import__("os").system("touch {CANARY}")+"""',
    f"$(touch {CANARY})",
    f"`touch {CANARY}`",
    f"$(shell touch {CANARY})",
    f"'; touch {CANARY}; '",
    f'"; touch {CANARY}; "',
    f"\ntouch {CANARY}\n",
    f'\\"\n!!python/object/apply:os.system ["touch {CANARY}"]',
)
# A valid value of every answer a person types; the text strategies grow around it.
FREE_TEXT_ANSWERS = {
    "project_name": "Churn Model",
    "description": "Churn model on SageMaker",
    "author_name": "ML Team",
    "author_email": "ml-team@example.com",
    "project_slug": "churn-model",
    "package_name": "churn_model",
    "dev_branch": "dev",
    "main_branch": "master",
    "repository": "my-org/churn-model",
    "codeconnections_arn": GITHUB_ANSWERS["codeconnections_arn"],
    "processing_instance_type": "ml.m5.large",
    "training_instance_type": "ml.m5.large",
    "endpoint_instance_type": "ml.m5.large",
    "quality_threshold": "0.8",
    "retrain_schedule": "cron(0 3 ? * MON *)",
    "notification_email": "ml-team@example.com",
}
GITHUB_ONLY = ("repository", "codeconnections_arn")
JINJA_DELIMITERS = ("{{", "}}", "{%", "%}", "{#", "#}")
# SageMaker EntityDescription (botocore): at most 1024 characters of these categories.
SAGEMAKER_DESCRIPTION_CATEGORIES = ("L", "M", "Z", "S", "N", "P")
# botocore: CodeCommit RepositoryDescription at most 1000 (cfn-lint's schema: at least 1).
DESCRIPTION_LIMITS = {
    "RepositoryDescription": (1, 1000),
    "ModelPackageGroupDescription": (0, 1024),
}
# How many examples each answer gets: enough to reach the edges, bounded for `make test`.
EXAMPLES_PER_ANSWER = 6
OUTCOMES: Counter = Counter()


class CloudFormationLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags, kept as {"!Tag": value}."""


def _tagged(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict:
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    return {f"!{suffix}": value}


CloudFormationLoader.add_multi_constructor("!", _tagged)


def no_jinja(text: str) -> bool:
    """True when cookiecutter would take text as it is (no Jinja delimiter in it)."""
    return not any(delimiter in text for delimiter in JINJA_DELIMITERS)


def answer_values(valid: str) -> st.SearchStrategy[str]:
    """Any text, ASCII punctuation, near-misses of a valid value, and payloads inside it."""
    ascii_text = st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127), max_size=24)
    around = st.text(max_size=3)
    printable = st.text(
        alphabet=st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")),
        min_size=1,
        max_size=40,
    )
    return st.one_of(
        printable,
        st.text(max_size=40),
        ascii_text,
        st.builds(lambda a, b: a + valid + b, around, around),
        st.builds(
            lambda p, i: valid[:i] + p + valid[i:],
            st.sampled_from(PAYLOADS),
            st.integers(0, len(valid)),
        ),
        st.sampled_from(("", " ", valid + "\n", valid.upper(), "😀 " + valid, valid * 40)),
    ).filter(no_jinja)


def answers_with(variable: str, value: str) -> dict:
    """Extra context: the default answers, GitHub when the variable needs it, one changed."""
    answers = {variable: value}
    if variable in GITHUB_ONLY:
        answers = {**GITHUB_ANSWERS, "source_provider": "github", **answers}
    return answers


def bake_or_refuse(answers: dict, output_dir: Path) -> Path | None:
    """The baked project folder, or None when a hook refused the answers."""
    try:
        return Path(
            cookiecutter(
                str(TEMPLATE), no_input=True, extra_context=answers, output_dir=str(output_dir)
            )
        )
    except FailedHookException:
        return None


def empty_after_cleanup(folder: Path) -> bool:
    """folder is absent or empty (the hook removes a slug's extra folders in the background)."""
    deadline = time.monotonic() + 10
    while folder.exists() and any(folder.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not folder.exists() or not any(folder.iterdir())


def files(project: Path, *suffixes: str) -> list[Path]:
    """The project's files with these suffixes, outside .git."""
    return [
        path
        for path in sorted(project.rglob("*"))
        if path.is_file() and path.suffix in suffixes and ".git" not in path.parts
    ]


def module_constant(path: Path, name: str) -> object:
    """The literal value assigned to name at the top of a Python file."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and [t.id for t in node.targets] == [name]:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} is not a literal in {path}")


def sagemaker_description_ok(text: str) -> bool:
    """SageMaker's EntityDescription pattern, category by category."""
    return all(unicodedata.category(c)[0] in SAGEMAKER_DESCRIPTION_CATEGORIES for c in text)


def assert_whole_repository(project: Path, answers: dict) -> None:
    """Every file parses, the answers arrive as given, bootstrap's commands expand."""
    for path in files(project, ".py"):
        ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    templates = {}
    for path in files(project, ".yml", ".yaml"):
        templates[path] = yaml.load(path.read_text(encoding="utf-8"), Loader=CloudFormationLoader)
    for path in files(project, ".json"):
        json.loads(path.read_text(encoding="utf-8"))
    pyproject = tomllib.loads((project / "pyproject.toml").read_text(encoding="utf-8"))

    config = next(project.glob("src/*/config.py"))
    expected = rendered_answers(answers)
    assert module_constant(config, "PROJECT_NAME") == expected["project_name"]
    assert module_constant(config, "DEV_BRANCH") == expected["dev_branch"]
    assert module_constant(config, "MAIN_BRANCH") == expected["main_branch"]
    assert pyproject["project"]["description"] == expected["description"]
    assert pyproject["project"]["authors"] == [
        {"name": expected["author_name"], "email": expected["author_email"]}
    ]

    for path, template in templates.items():
        if not (isinstance(template, dict) and "AWSTemplateFormatVersion" in template):
            continue
        for name, spec in template.get("Parameters", {}).items():
            if "Default" in spec and "AllowedPattern" in spec:
                default = str(spec["Default"])
                assert re.fullmatch(spec["AllowedPattern"], default), (path.name, name, default)
        for resource in template.get("Resources", {}).values():
            for prop, (low, high) in DESCRIPTION_LIMITS.items():
                text = resource.get("Properties", {}).get(prop)
                if text is not None:
                    assert low <= len(text) <= high, (prop, len(text))
                    assert sagemaker_description_ok(text), (prop, text)
        branches = template.get("Parameters", {})
        for parameter, variable in (("DevBranch", "dev_branch"), ("MainBranch", "main_branch")):
            if parameter in branches:
                assert branches[parameter]["Default"] == expected[variable]

    dry_run = subprocess.run(
        ["make", "-n", "bootstrap", f"PYTHON={PYTHON}"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dry_run.returncode == 0, dry_run.stderr


def rendered_answers(answers: dict) -> dict:
    """Every answer as cookiecutter renders it for these extra-context answers."""
    context = generate_context(str(TEMPLATE / "cookiecutter.json"), extra_context=answers)
    return prompt_for_config(context, no_input=True)


def check_outcome(answers: dict) -> str:
    """Bake in a fresh folder; assert a clean refusal or a whole repository; the outcome."""
    work = Path(tempfile.mkdtemp(prefix="answers-"))
    output = work / "out"
    try:
        # Relative paths in a payload would land in the working directory: use `work`.
        project = _in_directory(work, bake_or_refuse, answers, output)
        assert not list(work.rglob(CANARY)), f"an answer ran as code during the bake: {answers}"
        if project is None:
            assert empty_after_cleanup(output), f"refused, but left {list(output.rglob('*'))}"
            return "refused"
        assert_whole_repository(project, answers)
        assert not list(work.rglob(CANARY)), f"an answer ran as code: {answers}"
        return "baked"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _in_directory(directory: Path, function, *args):
    """function(*args) with directory as the working directory."""
    previous = os.getcwd()
    os.chdir(directory)
    try:
        return function(*args)
    finally:
        os.chdir(previous)


@pytest.fixture(scope="module", autouse=True)
def report_outcomes():
    """Print how many generated answers were refused and how many baked (pytest -s)."""
    yield
    if OUTCOMES:
        print(f"\ngenerated answers: {sum(OUTCOMES.values())} ({dict(OUTCOMES)})")


@pytest.mark.parametrize("variable", list(FREE_TEXT_ANSWERS))
def test_every_answer_is_refused_cleanly_or_bakes_a_whole_repository(variable, capfd):
    @settings(
        max_examples=EXAMPLES_PER_ANSWER,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(value=answer_values(FREE_TEXT_ANSWERS[variable]))
    def property_holds(value: str) -> None:
        capfd.readouterr()
        outcome = check_outcome(answers_with(variable, value))
        if outcome == "refused":
            errors = [
                line for line in capfd.readouterr().err.splitlines() if line.startswith("ERROR ")
            ]
            assert errors, f"{variable}={value!r} refused without an ERROR line"
        OUTCOMES[outcome] += 1

    property_holds()


# The answers of issue 11 that once baked broken or unsafe repositories, and what each
# does now.
REGRESSIONS = [
    (
        "branch-python-injection",
        {"dev_branch": f'dev"+__import__("os").system("touch {CANARY}")+"'},
        "refused",
    ),
    ("branch-double-quote", {"dev_branch": 'dev"x'}, "refused"),
    ("branch-single-quote", {"dev_branch": "dev'x"}, "refused"),
    ("branch-pipe", {"dev_branch": "|dev"}, "refused"),
    ("branch-percent", {"dev_branch": "%dev"}, "refused"),
    ("branch-braces", {"dev_branch": "{dev}"}, "refused"),
    ("branch-hash", {"dev_branch": "dev#x"}, "refused"),
    ("branch-non-ascii", {"dev_branch": "développement"}, "refused"),
    ("branch-yaml-boolean", {"main_branch": "yes"}, "baked"),
    (
        "emoji-quotes-backslashes",
        {
            "project_name": 'Le "modèle" \\ de churn 😀',
            "description": 'Émoji 🎉, quotes " and backslashes \\',
            "author_name": "Zoë O'Brien 🚀",
        },
        "baked",
    ),
    ("name-trailing-newline", {"project_name": "Churn Model\n"}, "refused"),
    ("nul-in-author", {"author_name": "ML\x00Team"}, "refused"),
    ("slug-with-slash", {"project_slug": "churn/model"}, "refused"),
    ("description-1001", {"description": "d" * 1001}, "refused"),
    ("description-1000", {"description": "d" * 1000}, "baked"),
    (
        "github-without-connection",
        {
            "source_provider": "github",
            "repository": "my-org/churn",
            "codeconnections_arn": "",
        },
        "baked",
    ),
    (
        "gitlab-nested-groups",
        {
            "source_provider": "gitlab",
            "repository": "grp/sub.team/churn_model",
            "codeconnections_arn": "",
        },
        "baked",
    ),
    (
        "bitbucket-workspace",
        {
            "source_provider": "bitbucket",
            "repository": "ml-team/churn.model",
            "codeconnections_arn": "",
        },
        "baked",
    ),
]


@pytest.mark.parametrize(
    ("answers", "expected"), [r[1:] for r in REGRESSIONS], ids=[r[0] for r in REGRESSIONS]
)
def test_issue_answers_end_as_expected(answers, expected, capfd):
    capfd.readouterr()
    assert check_outcome(answers) == expected
    if expected == "refused":
        err = capfd.readouterr().err
        named = [v for v in answers if re.search(rf"^ERROR {v}:", err, re.MULTILINE)]
        assert named, err
