"""The hook functions, called directly with answer dictionaries."""

import importlib.util
import json
import subprocess

import pytest
from conftest import GIT_HOST_ANSWERS, GITHUB_ANSWERS, TEMPLATE


def load_hook(name: str):
    """Import a hook script as a module (its answers are only parsed inside main())."""
    spec = importlib.util.spec_from_file_location(name, TEMPLATE / "hooks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


pre_gen = load_hook("pre_gen_project")
post_gen = load_hook("post_gen_project")


def rendered_defaults(**overrides) -> dict:
    """The answers cookiecutter would pass with --no-input (private names rendered)."""
    from cookiecutter.generate import generate_context
    from cookiecutter.prompt import prompt_for_config

    context = generate_context(str(TEMPLATE / "cookiecutter.json"), extra_context=overrides)
    return prompt_for_config(context, no_input=True)


@pytest.fixture(scope="module")
def defaults() -> dict:
    return rendered_defaults()


def test_defaults_pass_every_check(defaults):
    assert pre_gen.main(defaults) == 0


@pytest.mark.parametrize("host", ["github", "gitlab", "bitbucket"])
def test_git_host_defaults_pass_every_check(host):
    answers = rendered_defaults(source_provider=host, **GITHUB_ANSWERS)
    assert pre_gen.main({**answers, **GIT_HOST_ANSWERS[host]}) == 0


def test_main_reports_every_problem_one_line_each(defaults, capsys):
    answers = {**defaults, "aws_region": "mars-1", "quality_threshold": "2", "dev_branch": "a b"}
    assert pre_gen.main(answers) == 1
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines[:-1]] == [
        "ERROR aws_region",
        "ERROR dev_branch",
        "ERROR quality_threshold",
    ]
    assert lines[-1].startswith("3 invalid answer(s)")


@pytest.mark.parametrize(
    "slug", ["churn-model", "a1", "x-y-z", "m" * 40], ids=["plain", "short", "hyphens", "max"]
)
def test_valid_slugs(defaults, slug):
    assert pre_gen.check_slug(with_slug(defaults, slug)) == []


@pytest.mark.parametrize(
    "slug", ["Churn", "1model", "model-", "-model", "a", "churn_model", "churn--model", ""]
)
def test_invalid_slug_patterns(defaults, slug):
    [problem] = pre_gen.check_slug(with_slug(defaults, slug))
    assert problem.startswith(f"project_slug: {slug!r} must be lowercase")


def with_slug(answers: dict, slug: str) -> dict:
    """Answers whose derived names are re-rendered from another slug."""
    return rendered_defaults(project_slug=slug, aws_region=answers["aws_region"])


def test_slug_bound_comes_from_the_longest_aws_name(defaults):
    # us-east-1: bucket "<slug>-us-east-1-<12 digits>" <= 63, so the slug may be 40 long.
    assert pre_gen.check_slug(with_slug(defaults, "m" * 40)) == []
    [problem] = pre_gen.check_slug(with_slug(defaults, "m" * 41))
    assert "S3 artifact bucket" in problem
    assert "use at most 40 characters" in problem


def test_slug_bound_depends_on_the_region():
    answers = rendered_defaults(project_slug="m" * 40, aws_region="ap-southeast-2")
    [problem] = pre_gen.check_slug(answers)
    assert "use at most 35 characters" in problem


@pytest.mark.parametrize("name", ["class", "match", "1abc", "Churn", "a-b", "sagemaker", ""])
def test_invalid_package_names(defaults, name):
    [problem] = pre_gen.check_package_name({**defaults, "package_name": name})
    assert problem.startswith(f"package_name: {name!r}")


@pytest.mark.parametrize(
    "name",
    [
        "dev",
        "master",
        "feature/x",
        "release-1.0",
        "a.b",
        "-dev",
        "dev/",
        "dev.lock",
        "a..b",
        "a b",
        "a~b",
        "a^b",
        "a:b",
        "a?b",
        "a*b",
        "a[b",
        "a\\b",
        "a@{b",
        ".hidden",
        "a/.b",
        "a//b",
        "dev.",
        "a\tb",
    ],
)
def test_branch_rules_agree_with_git(name, tmp_path):
    git = subprocess.run(
        ["git", "check-ref-format", "--branch", name], capture_output=True, cwd=tmp_path
    )
    assert pre_gen.is_valid_git_branch(name) == (git.returncode == 0)


def test_branch_named_at_is_refused():
    # git takes "@" for HEAD in most commands; as a branch name it only confuses.
    assert not pre_gen.is_valid_git_branch("@")


def test_branches_must_differ(defaults):
    [problem] = pre_gen.check_branches({**defaults, "dev_branch": "main", "main_branch": "main"})
    assert problem.startswith("main_branch: 'main' is the same as dev_branch")


@pytest.mark.parametrize("value", ["0", "-0.1", "1.01", "abc", "nan", "inf", ""])
def test_invalid_thresholds(defaults, value):
    [problem] = pre_gen.check_threshold({**defaults, "quality_threshold": value})
    assert problem.startswith(f"quality_threshold: {value!r}")


@pytest.mark.parametrize("value", ["1", "0.5", "1e-3", "0.999"])
def test_valid_thresholds(defaults, value):
    assert pre_gen.check_threshold({**defaults, "quality_threshold": value}) == []


@pytest.mark.parametrize("value", ["ml.m5.large", "ml.g5.2xlarge", "ml.t3.medium"])
def test_valid_instance_types(defaults, value):
    assert pre_gen.check_instance_types({**defaults, "training_instance_type": value}) == []


@pytest.mark.parametrize("value", ["m5.large", "ml.m5", "ML.M5.LARGE", "ml.m5.large "])
def test_invalid_instance_types(defaults, value):
    [problem] = pre_gen.check_instance_types({**defaults, "endpoint_instance_type": value})
    assert problem.startswith(f"endpoint_instance_type: {value!r}")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "rate(1 day)",
        "rate(7 days)",
        "rate(12 hours)",
        "cron(0 3 ? * MON *)",
        "cron(15 2 1 * ? *)",
    ],
)
def test_valid_retrain_schedules(defaults, value):
    assert pre_gen.check_retrain_schedule({**defaults, "retrain_schedule": value}) == []


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("daily", "neither rate"),
        ("rate(0 days)", "neither rate"),
        ("rate(1 days)", "singular unit"),
        ("rate(7 day)", "singular unit"),
        ("rate(2 weeks)", "neither rate"),
        ("cron(0 3 * * MON)", "has 5 cron fields"),
        ("cron(0 3 * * MON *)", "needs ?"),
        ("at(2030-01-01T00:00:00)", "neither rate"),
        ("rate(7 days)\n", "neither rate"),
        ("cron(0 3 ? * MON *)\nx: 1", "neither rate"),
    ],
)
def test_invalid_retrain_schedules(defaults, value, reason):
    [problem] = pre_gen.check_retrain_schedule({**defaults, "retrain_schedule": value})
    assert problem.startswith(f"retrain_schedule: {value!r}")
    assert reason in problem


@pytest.mark.parametrize("value", ["team at example.com", "a@b", "a@b.co\n", "<a@b.co>"])
def test_invalid_notification_emails(defaults, value):
    [problem] = pre_gen.check_notification_email({**defaults, "notification_email": value})
    assert problem.startswith(f"notification_email: {value!r}")


def test_a_git_host_region_must_offer_codeconnections(defaults):
    gitlab = {**defaults, "aws_region": "ap-east-1", "source_provider": "gitlab"}
    [problem] = pre_gen.check_region(gitlab)
    assert "AWS::CodeConnections::Connection (used with gitlab) does not exist" in problem
    assert pre_gen.check_region({**defaults, "aws_region": "ap-east-1"}) == []


def test_git_host_answers_are_ignored_for_codecommit(defaults):
    answers = {**defaults, "repository": "not a repo", "codeconnections_arn": "x"}
    assert pre_gen.check_git_host(answers) == []


@pytest.mark.parametrize(
    ("host", "variable", "value"),
    [
        ("github", "repository", "no-slash"),
        ("github", "repository", "owner/repo/extra"),
        ("github", "repository", "-owner/repo"),
        ("github", "repository", "owner/.."),
        ("gitlab", "repository", "group"),
        ("gitlab", "repository", "group/project.git"),
        ("gitlab", "repository", "group/-project"),
        ("gitlab", "repository", "group/a..b"),
        ("gitlab", "repository", "/".join(["g"] * 22)),
        ("gitlab", "repository", "group/" + "p" * 250),
        ("bitbucket", "repository", "Workspace/repo"),
        ("bitbucket", "repository", "workspace/group/repo"),
        ("bitbucket", "repository", "workspace/" + "r" * 63),
        (
            "bitbucket",
            "codeconnections_arn",
            "arn:aws:codeconnections:us-east-1:123:connection/abc",
        ),
        ("github", "codeconnections_arn", "arn:aws:s3:::bucket"),
    ],
)
def test_git_host_formats(defaults, host, variable, value):
    answers = {**defaults, **GIT_HOST_ANSWERS[host], "source_provider": host, variable: value}
    [problem] = pre_gen.check_git_host(answers)
    assert problem.startswith(f"{variable}: {value!r}")


@pytest.mark.parametrize(
    ("host", "repository"),
    [
        ("github", "my-org/churn.model_v2"),
        ("gitlab", "my-group/churn-model"),
        ("gitlab", "my-group/ml/team.a/churn_model"),
        ("gitlab", "/".join(["g"] * 21)),
        ("bitbucket", "my-workspace/churn.model_v2"),
    ],
)
def test_git_host_paths_each_host_accepts(defaults, host, repository):
    answers = {**defaults, "source_provider": host, "repository": repository}
    assert pre_gen.check_git_host({**answers, "codeconnections_arn": ""}) == []


def test_choices_and_booleans_are_rechecked(defaults):
    # A replay file or an edited context can bypass cookiecutter's own choice check.
    bad = {**defaults, "staging_endpoint": "lambda", "prod_approval": "yes"}
    assert [p.split(":")[0] for p in pre_gen.check_choices(bad)] == ["staging_endpoint"]
    assert pre_gen.check_prod_approval(bad)[0].startswith("prod_approval: 'yes'")


def test_answers_json_survives_quotes_backslashes_and_newlines():
    # The hooks embed `{{ cookiecutter | tojson }}` in a raw string: check that such a
    # rendering parses back to the same value.
    from jinja2 import Environment

    value = 'a "quoted" \\ back\nslash \'single\' """triple"""'
    source = 'r"""{{ answers | tojson }}"""'
    rendered = Environment().from_string(source).render(answers={"project_name": value})
    assert json.loads(eval(rendered))["project_name"] == value


def test_post_gen_without_git_warns_and_succeeds(defaults, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(post_gen.shutil, "which", lambda name: None)
    assert post_gen.main(defaults) == 0
    assert "git is not installed" in capsys.readouterr().err
    assert not (tmp_path / ".git").exists()


def test_post_gen_commits_without_a_git_identity(defaults, monkeypatch, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "README.md").write_text("hello\n")
    monkeypatch.chdir(project)
    monkeypatch.setenv("HOME", str(tmp_path / "no-home"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_DIR", str(tmp_path / "elsewhere"))  # a caller's git context
    assert post_gen.main(defaults) == 0
    monkeypatch.delenv("GIT_DIR")
    log = subprocess.run(
        ["git", "log", "--all", "--format=%an <%ae>|%D"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert log == "ML Team <ml-team@example.com>|HEAD -> dev, master"


def test_post_gen_reports_a_failing_git_as_a_warning(defaults, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    answers = {**defaults, "main_branch": "bad..name"}  # git init refuses it
    assert post_gen.main(answers) == 0
    assert capsys.readouterr().err.startswith("WARNING git init failed")


def test_post_gen_names_the_project_in_the_lock(defaults, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    template_lock = (TEMPLATE / "{{cookiecutter.project_slug}}" / "uv.lock").read_text()
    (tmp_path / "uv.lock").write_text(template_lock)
    post_gen.name_the_locked_project({**defaults, "project_slug": "my-model"})
    lock = (tmp_path / "uv.lock").read_text()
    assert lock == template_lock.replace(post_gen.LOCKED_PROJECT_NAME, '"my-model"')
    assert lock.count('"my-model"') == 1
    assert "cookiecutter" not in lock


def test_hooks_read_answers_only_as_json():
    for name in ("pre_gen_project", "post_gen_project"):
        source = (TEMPLATE / "hooks" / f"{name}.py").read_text()
        jinja = [line for line in source.splitlines() if "{{" in line or "{%" in line]
        assert jinja == ['ANSWERS_JSON = r"""{{ cookiecutter | tojson }}"""'], name


@pytest.mark.parametrize(
    "name",
    ["Churn Model", "Modèle de désabonnement", "客户流失", "Churn 😀 model", 'a "quoted" \\ name'],
)
def test_printable_free_text_is_accepted(defaults, name):
    answers = {**defaults, "project_name": name, "description": name, "author_name": name}
    assert pre_gen.check_free_text(answers) == []


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("Churn\n", "'\\n' (U+000A)"),
        ("a\tb", "'\\t' (U+0009)"),
        ("a\x00b", "'\\x00' (U+0000)"),
        ("a\u202eb", "U+202E RIGHT-TO-LEFT OVERRIDE"),
        ("a\ud800b", "U+D800"),
    ],
)
def test_unprintable_free_text_is_refused_naming_the_character(defaults, text, shown):
    for variable in pre_gen.FREE_TEXT_VARIABLES:
        [problem] = pre_gen.check_free_text({**defaults, variable: text})
        assert problem.startswith(f"{variable}: {text!r} contains ")
        assert shown in problem


def test_free_text_lengths_follow_the_aws_limits(defaults):
    longest = 1024 - len(pre_gen.PROJECT_NAME_SUFFIX)
    assert pre_gen.check_free_text_lengths({**defaults, "project_name": "n" * longest}) == []
    [problem] = pre_gen.check_free_text_lengths({**defaults, "project_name": "n" * (longest + 1)})
    assert problem.startswith("project_name:") and f"at most {longest}" in problem
    assert pre_gen.check_free_text_lengths({**defaults, "description": "d" * 1000}) == []
    [problem] = pre_gen.check_free_text_lengths({**defaults, "description": "d" * 1001})
    assert problem.startswith("description: 1001 characters")
    # The description reaches CodeCommit only; with GitHub the limit does not apply.
    github = {**defaults, "source_provider": "github", "description": "d" * 1001}
    assert pre_gen.check_free_text_lengths(github) == []


@pytest.mark.parametrize(
    "name", ["dev'x", "|dev", "%dev", "{dev}", "dev#x", "développement", "dev$x", 'a"b', "dev\n"]
)
def test_branches_outside_the_cloudformation_pattern_are_refused(defaults, name):
    [problem] = pre_gen.check_branches({**defaults, "dev_branch": name})
    assert problem.startswith(f"dev_branch: {name!r} may only use letters")


def test_branch_named_head_is_refused(defaults):
    [problem] = pre_gen.check_branches({**defaults, "main_branch": "HEAD"})
    assert "not a valid git branch name" in problem


@pytest.mark.parametrize(("dev", "main"), [("release/dev", "release"), ("a", "a/b/c")])
def test_a_branch_cannot_be_a_folder_of_the_other(defaults, dev, main):
    [problem] = pre_gen.check_branches({**defaults, "dev_branch": dev, "main_branch": main})
    assert problem.startswith(f"main_branch: {main!r} and dev_branch {dev!r} cannot both")


def test_branch_length_follows_codecommit(defaults):
    assert pre_gen.check_branches({**defaults, "dev_branch": "d" * 256}) == []
    [problem] = pre_gen.check_branches({**defaults, "dev_branch": "d" * 257})
    assert "256" in problem


@pytest.mark.parametrize("name", ["ML <team>", "a>b", "...", " ; "])
def test_author_names_git_would_alter_are_refused(defaults, name):
    [problem] = pre_gen.check_author({**defaults, "author_name": name})
    assert problem.startswith(f"author_name: {name!r}")


@pytest.mark.parametrize(
    "email", ["ml@example.com\n", "ml team@example.com", "ml@example", 'a"b@example.com', "é@x.fr"]
)
def test_invalid_emails(defaults, email):
    [problem] = pre_gen.check_author({**defaults, "author_email": email})
    assert problem.startswith(f"author_email: {email!r}")


@pytest.mark.parametrize("host", ["github", "gitlab", "bitbucket"])
def test_a_git_host_without_a_connection_arn_is_accepted(defaults, host):
    answers = {**defaults, **GIT_HOST_ANSWERS[host], "source_provider": host}
    assert pre_gen.check_git_host({**answers, "codeconnections_arn": ""}) == []


@pytest.mark.parametrize("value", ["0.8\n", " 0.8", "0.8_0", "+0.5"])
def test_thresholds_match_whole(defaults, value):
    [problem] = pre_gen.check_threshold({**defaults, "quality_threshold": value})
    assert problem.startswith(f"quality_threshold: {value!r}")


def test_post_gen_survives_a_nul_byte_and_prints_the_next_steps(
    defaults, capsys, monkeypatch, tmp_path
):
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    (project / "README.md").write_text("hello\n")
    answers = {**defaults, "author_name": "ML\x00Team"}
    assert post_gen.main(answers, project_dir=project) == 0
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    assert captured.err.startswith("WARNING git could not run")
    lines = captured.out.splitlines()
    assert lines[0] == f"Generated {project}"
    assert lines[2] == f"  cd {project}"
    assert [line.split()[:2] for line in lines[3:6]] == [
        ["make", "install"],
        ["make", "local-pipeline"],
        ["make", "test"],
    ]


@pytest.mark.parametrize(
    ("staging", "prod"),
    [("", ""), ("222233334444", "555566667777"), ("222233334444", "222233334444")],
)
def test_stage_account_combinations_that_deploy(defaults, staging, prod):
    answers = {**defaults, "staging_account_id": staging, "prod_account_id": prod}
    assert pre_gen.check_accounts(answers) == []


@pytest.mark.parametrize(
    ("staging", "prod", "problem"),
    [
        ("22223333444", "555566667777", "staging_account_id: '22223333444' must be a 12-digit"),
        ("222233334444", "5555-6666-7777", "prod_account_id: '5555-6666-7777' must be a 12-digit"),
        ("222233334444 ", "555566667777", "staging_account_id: '222233334444 ' must be"),
        ("", "555566667777", "set both or neither"),
        ("222233334444", "", "set both or neither"),
    ],
)
def test_stage_account_combinations_refused(defaults, staging, prod, problem):
    answers = {**defaults, "staging_account_id": staging, "prod_account_id": prod}
    [line] = pre_gen.check_accounts(answers)
    assert problem in line and "\n" not in line
