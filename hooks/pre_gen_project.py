"""Validate every cookiecutter answer before anything is generated.

Each problem is one line on stderr naming the variable, the value and the rule; the hook
exits 1 when there is any, and cookiecutter then removes the half-made output.
"""

import json
import keyword
import os
import re
import subprocess
import sys
import unicodedata

# Answers are read as data (JSON, parsed in main), never pasted into code. The raw string
# keeps JSON's escapes intact: quotes, backslashes and newlines in an answer are harmless.
ANSWERS_JSON = r"""{{ cookiecutter | tojson }}"""

# Regions where SageMaker, CodePipeline and CodeBuild all exist and the SDK knows the
# XGBoost image (checked with botocore's endpoint data and sagemaker.core.image_uris).
SUPPORTED_REGIONS = frozenset(
    """
    af-south-1 ap-east-1 ap-northeast-1 ap-northeast-2 ap-northeast-3 ap-south-1
    ap-south-2 ap-southeast-1 ap-southeast-2 ap-southeast-3 ap-southeast-4 ca-central-1
    eu-central-1 eu-central-2 eu-north-1 eu-south-1 eu-south-2 eu-west-1 eu-west-2
    eu-west-3 il-central-1 me-central-1 me-south-1 sa-east-1 us-east-1 us-east-2
    us-west-1 us-west-2
    """.split()
)
# CodeCommit is not offered in these supported regions.
REGIONS_WITHOUT_CODECOMMIT = frozenset({"ap-southeast-4", "eu-central-2", "eu-south-2"})

CHOICES = {
    "source_provider": ("codecommit", "github"),
    "python_version": ("3.11", "3.12"),
    "model_approval": ("manual", "auto"),
    "staging_endpoint": ("serverless", "instance"),
    "quality_metric": ("auc", "accuracy", "f1"),
}

# Every pattern is applied with re.fullmatch: an answer with a trailing newline fails it.
SLUG_PATTERN = re.compile(r"[a-z][a-z0-9-]*[a-z0-9]")
PACKAGE_PATTERN = re.compile(r"[a-z_][a-z0-9_]*")
INSTANCE_TYPE_PATTERN = re.compile(r"ml\.[a-z0-9]+\.[a-z0-9]+")
# A practical address: what git, pyproject.toml and every packaging tool accept as is.
EMAIL_PATTERN = re.compile(
    r"[A-Za-z0-9._%+-]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
    r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+"
)
# GitHub: an owner is letters, digits and single inner hyphens (at most 39); a repository
# name is letters, digits, ".", "_" and "-" (at most 100). Both fit the templates' pattern.
GITHUB_REPOSITORY_PATTERN = re.compile(r"[A-Za-z0-9](?:-?[A-Za-z0-9]){0,38}/[A-Za-z0-9._-]{1,100}")
CONNECTION_ARN_PATTERN = re.compile(
    r"arn:aws(?:-[a-z]+)*:(?:codeconnections|codestar-connections):[a-z0-9-]+:\d{12}:"
    r"connection/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)
# A decimal number as a person writes it: no sign, no spaces, no underscores.
NUMBER_PATTERN = re.compile(r"(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
# Branch names: the CloudFormation AllowedPattern of the DevBranch/MainBranch parameters
# (infra/*.yml). These characters also need no quoting in a shell or make word, and none
# is a glob character in CodePipeline's branch filters.
BRANCH_CHARACTERS = re.compile(r"[A-Za-z0-9._/-]+")
# CodeCommit BranchName (botocore codecommit model): 1 to 256 characters.
BRANCH_MAX_LENGTH = 256

# Free text: where each answer lands in AWS and the longest text it may make there.
# CodeCommit RepositoryDescription: at most 1000 characters, at least 1 (botocore model and
# cfn-lint's AWS::CodeCommit::Repository schema). SageMaker EntityDescription (model
# package group and model package descriptions): at most 1024, letters, marks, separators,
# symbols, numbers and punctuation.
CODECOMMIT_DESCRIPTION_MAX = 1000
SAGEMAKER_DESCRIPTION_MAX = 1024
# The longest text the templates append to project_name in a SageMaker description
# (infra/model-build-pipeline.yml, the model group description).
PROJECT_NAME_SUFFIX = " models, one package per trained commit"
FREE_TEXT_VARIABLES = ("project_name", "description", "author_name")
# git drops these characters from the ends of an author name, and "<" ">" everywhere.
GIT_NAME_CRUD = ".,:;<>\"'\\ "

# Module names the generated code imports: a package named like one would shadow it.
SHADOWED_MODULES = frozenset(
    "app boto3 botocore moto numpy pandas rehearsal sagemaker sklearn test tests xgboost".split()
)

# Every AWS name derived from the slug: (what it names, AWS length limit, characters
# added at deploy time). The bucket gets "-<12-digit account id>" appended by CloudFormation.
AWS_NAME_LIMITS = {
    "__artifact_bucket_prefix": ("S3 artifact bucket", 63, len("-123456789012")),
    "__model_package_group_name": ("SageMaker model package group", 63, 0),
    "__sagemaker_pipeline_name": ("SageMaker pipeline", 256, 0),
    "__staging_endpoint_name": ("SageMaker staging endpoint", 63, 0),
    "__prod_endpoint_name": ("SageMaker production endpoint", 63, 0),
    "__build_pipeline_name": ("CodePipeline model build pipeline", 100, 0),
    "__deploy_pipeline_name": ("CodePipeline model deploy pipeline", 100, 0),
    "__build_stack_name": ("CloudFormation build stack", 128, 0),
    "__deploy_stack_name": ("CloudFormation deploy stack", 128, 0),
    "__staging_stack_name": ("CloudFormation staging endpoint stack", 128, 0),
    "__prod_stack_name": ("CloudFormation production endpoint stack", 128, 0),
    "__codecommit_repository_name": ("CodeCommit repository", 100, 0),
    "__merge_function_name": ("Lambda merge function", 64, 0),
    "__approval_rule_name": ("EventBridge approval rule", 64, 0),
    "__dev_push_rule_name": ("EventBridge push rule", 64, 0),
    "__sagemaker_role_name": ("IAM SageMaker execution role", 64, 0),
    "__start_deploy_function_name": ("Lambda deploy starter function", 64, 0),
    "__dead_letter_queue_name": ("SQS dead-letter queue", 80, 0),
    "__github_token_secret_name": ("Secrets Manager token secret", 512, 0),
    "__new_data_rule_name": ("EventBridge new-data rule", 64, 0),
    "__start_build_function_name": ("Lambda build starter function", 64, 0),
    "__build_dead_letter_queue_name": ("SQS build dead-letter queue", 80, 0),
    "__retrain_schedule_name": ("EventBridge Scheduler schedule", 64, 0),
    "__notification_topic_name": ("SNS notification topic", 256, 0),
    "__pipeline_failed_rule_name": ("EventBridge pipeline failure rule", 64, 0),
    "__training_failed_rule_name": ("EventBridge training failure rule", 64, 0),
    "__approval_waiting_rule_name": ("EventBridge approval rule", 64, 0),
    "__endpoint_alarm_rule_name": ("EventBridge endpoint alarm rule", 64, 0),
    "__merge_failed_rule_name": ("EventBridge merge failure rule", 64, 0),
}
# EventBridge Scheduler expressions: rate(<n> <unit>) or a six-field cron(...), whose
# day-of-month or day-of-week is "?". One-time at(...) schedules do not retrain.
RATE_PATTERN = re.compile(r"^rate\((?P<value>[1-9][0-9]*) (?P<unit>minutes?|hours?|days?)\)$")
CRON_PATTERN = re.compile(r"^cron\((?P<fields>[0-9A-Za-z*?,/#\- ]+)\)$")
SCHEDULE_EXAMPLES = "e.g. cron(0 3 ? * MON *) or rate(7 days)"


def check_choices(answers):
    """Choice answers must be one of the offered values."""
    return [
        f"{name}: {answers.get(name)!r} is not one of {', '.join(options)}"
        for name, options in CHOICES.items()
        if answers.get(name) not in options
    ]


def check_prod_approval(answers):
    """prod_approval is a real boolean."""
    value = answers.get("prod_approval")
    if isinstance(value, bool):
        return []
    return [f"prod_approval: {value!r} is not a boolean; answer yes or no (true/false)"]


def unprintable_characters(text):
    """The characters of text that are not printable (controls, format characters, ...)."""
    found = []
    for char in text:
        if not char.isprintable() and char not in found:
            found.append(char)
    return found


def describe_characters(chars):
    """'\\n' (U+000A), ...: characters as a person can identify them."""
    return ", ".join(
        f"{char!r} (U+{ord(char):04X}{' ' + unicodedata.name(char, '')})".replace(" )", ")")
        for char in chars
    )


def check_free_text(answers):
    """Name, description and author: printable text on one line, never empty."""
    problems = []
    for variable in FREE_TEXT_VARIABLES:
        text = answers.get(variable, "")
        if not isinstance(text, str) or not text.strip():
            problems.append(f"{variable}: {text!r} must be a non-empty line of text")
            continue
        unprintable = unprintable_characters(text)
        if unprintable:
            problems.append(
                f"{variable}: {text!r} contains {describe_characters(unprintable)}; "
                "use printable characters only (no newline, tab or control character)"
            )
    return problems


def check_free_text_lengths(answers):
    """Free text fits every AWS description it lands in."""
    problems = []
    name = answers.get("project_name", "")
    longest_name = SAGEMAKER_DESCRIPTION_MAX - len(PROJECT_NAME_SUFFIX)
    if len(name) > longest_name:
        problems.append(
            f"project_name: {len(name)} characters; at most {longest_name} so that the "
            f"SageMaker model package group description ({SAGEMAKER_DESCRIPTION_MAX} "
            "characters at most) fits"
        )
    description = answers.get("description", "")
    if (
        answers.get("source_provider") == "codecommit"
        and len(description) > CODECOMMIT_DESCRIPTION_MAX
    ):
        problems.append(
            f"description: {len(description)} characters; the CodeCommit repository "
            f"description takes at most {CODECOMMIT_DESCRIPTION_MAX}"
        )
    return problems


def check_slug(answers):
    """The slug matches the AWS-friendly pattern and every name built from it fits."""
    slug = answers.get("project_slug", "")
    if not SLUG_PATTERN.fullmatch(slug) or "--" in slug:
        return [
            f"project_slug: {slug!r} must be lowercase letters, digits and single hyphens, "
            "start with a letter and not end with a hyphen (e.g. churn-model)"
        ]
    worst = None
    for variable, (what, limit, added) in AWS_NAME_LIMITS.items():
        name = answers.get(variable, "") + ("-<account id>" if added else "")
        overflow = len(answers.get(variable, "")) + added - limit
        if overflow > 0 and (worst is None or overflow > worst[0]):
            worst = (overflow, what, name, limit)
    if worst is None:
        return []
    overflow, what, name, limit = worst
    return [
        f"project_slug: {slug!r} ({len(slug)} characters) makes the {what} name {name!r} "
        f"longer than the AWS limit of {limit}; use at most {len(slug) - overflow} characters"
    ]


def check_package_name(answers):
    """The package name is an importable, non-keyword identifier that shadows nothing."""
    name = answers.get("package_name", "")
    if not PACKAGE_PATTERN.fullmatch(name) or not name.isidentifier():
        return [
            f"package_name: {name!r} must be a Python identifier of lowercase letters, "
            "digits and underscores (e.g. churn_model)"
        ]
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return [f"package_name: {name!r} is a Python keyword; choose another name"]
    if name in SHADOWED_MODULES:
        return [f"package_name: {name!r} would shadow the module of that name; choose another"]
    return []


def check_author(answers):
    """The author goes into the first commit and pyproject.toml, as git would write it."""
    problems = []
    name = answers.get("author_name", "")
    if isinstance(name, str) and name.strip() and not unprintable_characters(name):
        if "<" in name or ">" in name:
            problems.append(
                f"author_name: {name!r} contains < or >, which git removes from names; "
                "give the name only (the e-mail is asked separately)"
            )
        elif not name.strip(GIT_NAME_CRUD):
            problems.append(f"author_name: {name!r} has no letter or digit git keeps")
    email = answers.get("author_email", "")
    if not isinstance(email, str) or not EMAIL_PATTERN.fullmatch(email):
        problems.append(
            f"author_email: {email!r} is not an e-mail address like ml-team@example.com "
            "(ASCII letters, digits and ._%+- before the @, a domain with a dot after it)"
        )
    return problems


def check_region(answers):
    """The region has SageMaker, CodePipeline, CodeBuild (and CodeCommit when chosen)."""
    region = answers.get("aws_region", "")
    if region not in SUPPORTED_REGIONS:
        return [
            f"aws_region: {region!r} is not a region with SageMaker, CodePipeline and "
            f"CodeBuild; use one of {', '.join(sorted(SUPPORTED_REGIONS))}"
        ]
    if answers.get("source_provider") == "codecommit" and region in REGIONS_WITHOUT_CODECOMMIT:
        return [
            f"aws_region: CodeCommit is not available in {region!r}; choose another region "
            "or source_provider github"
        ]
    return []


def is_valid_git_branch(name):
    """The rules of `git check-ref-format --branch`, without running git."""
    if not name or name.startswith(("-", "/")) or name.endswith(("/", ".", ".lock")):
        return False
    if name in ("@", "HEAD") or any(part in name for part in ("..", "@{", "//")):
        return False
    if any(ord(char) < 0x20 or ord(char) == 0x7F or char in " ~^:?*[\\" for char in name):
        return False
    return not any(part.startswith(".") or part.endswith(".lock") for part in name.split("/"))


def branch_problem(name):
    """Why name cannot be a branch of this project, or None."""
    if not isinstance(name, str) or not BRANCH_CHARACTERS.fullmatch(name):
        return (
            "may only use letters A-Z a-z, digits and . _ / - (the branch parameters' "
            "CloudFormation pattern; these need no quoting in shell or make)"
        )
    if len(name) > BRANCH_MAX_LENGTH:
        return f"is longer than CodeCommit's {BRANCH_MAX_LENGTH}-character branch names"
    if not is_valid_git_branch(name):
        return (
            "is not a valid git branch name (no leading - or /, no .., //, trailing / "
            "or ., no part starting with . or ending with .lock, not HEAD)"
        )
    return None


def check_branches(answers):
    """Both branches are safe, valid git branch names that can live side by side."""
    problems = []
    for variable in ("dev_branch", "main_branch"):
        name = answers.get(variable, "")
        problem = branch_problem(name)
        if problem:
            problems.append(f"{variable}: {name!r} {problem}")
    if problems:
        return problems
    dev, main = answers.get("dev_branch"), answers.get("main_branch")
    if dev == main:
        problems.append(
            f"main_branch: {main!r} is the same as dev_branch; the two branches must differ"
        )
    elif dev.startswith(main + "/") or main.startswith(dev + "/"):
        problems.append(
            f"main_branch: {main!r} and dev_branch {dev!r} cannot both exist in git "
            "(one is a folder of the other); choose names where neither starts with the "
            "other followed by /"
        )
    return problems


def check_instance_types(answers):
    """Instance types look like ml.<family>.<size>."""
    return [
        f"{variable}: {answers.get(variable)!r} is not an instance type like ml.m5.large"
        for variable in (
            "processing_instance_type",
            "training_instance_type",
            "endpoint_instance_type",
        )
        if not INSTANCE_TYPE_PATTERN.fullmatch(str(answers.get(variable, "")))
    ]


def check_threshold(answers):
    """The quality threshold is a number in (0, 1]."""
    raw = answers.get("quality_threshold", "")
    value = float(raw) if NUMBER_PATTERN.fullmatch(str(raw)) else float("nan")
    if not 0 < value <= 1:  # NaN fails this comparison too
        return [f"quality_threshold: {raw!r} must be a number greater than 0 and at most 1"]
    return []


def check_github(answers):
    """With GitHub as the source, the repository and the connection ARN are well formed."""
    if answers.get("source_provider") != "github":
        return []
    problems = []
    repository = answers.get("github_repository", "")
    if not GITHUB_REPOSITORY_PATTERN.fullmatch(str(repository)) or repository.endswith(
        ("/.", "/..")
    ):
        problems.append(
            f"github_repository: {repository!r} must be owner/name (e.g. my-org/churn-model)"
        )
    arn = answers.get("codeconnections_arn", "")
    # Empty: `make bootstrap` creates the connection and waits for its approval.
    if arn and not CONNECTION_ARN_PATTERN.fullmatch(str(arn)):
        problems.append(
            f"codeconnections_arn: {arn!r} must be a connection ARN like "
            "arn:aws:codeconnections:us-east-1:123456789012:connection/<uuid>, "
            "or empty to let make bootstrap create the connection"
        )
    return problems


def schedule_problem(expression):
    """Why an EventBridge Scheduler recurring expression is malformed, or None."""
    if len(expression) > 256:
        return "is longer than 256 characters"
    rate = RATE_PATTERN.fullmatch(expression)
    if rate:
        singular = rate["value"] == "1"
        if singular == rate["unit"].endswith("s"):
            return "takes a singular unit for 1, a plural one otherwise (rate(1 day), rate(7 days))"
        return None
    cron = CRON_PATTERN.fullmatch(expression)
    if not cron:
        return "is neither rate(<value> <unit>) nor cron(<six fields>)"
    fields = cron["fields"].split()
    if len(fields) != 6:
        return (
            f"has {len(fields)} cron fields; it needs six: "
            "minutes hours day-of-month month day-of-week year"
        )
    if "?" not in (fields[2], fields[4]):
        return "needs ? in day-of-month or day-of-week (the third or fifth cron field)"
    return None


def check_retrain_schedule(answers):
    """An optional recurring schedule expression for retraining."""
    expression = answers.get("retrain_schedule", "")
    if not isinstance(expression, str):
        return [f"retrain_schedule: {expression!r} must be text ({SCHEDULE_EXAMPLES}) or empty"]
    problem = schedule_problem(expression) if expression else None
    if problem:
        return [f"retrain_schedule: {expression!r} {problem}; {SCHEDULE_EXAMPLES}, or empty"]
    return []


def check_notification_email(answers):
    """An optional e-mail address subscribed to the notification topic."""
    email = answers.get("notification_email", "")
    if email and not (isinstance(email, str) and EMAIL_PATTERN.fullmatch(email)):
        return [
            f"notification_email: {email!r} is not an e-mail address "
            "(e.g. ml-team@example.com); leave it empty to subscribe later"
        ]
    return []


CHECKS = (
    check_choices,
    check_prod_approval,
    check_free_text,
    check_free_text_lengths,
    check_slug,
    check_package_name,
    check_author,
    check_region,
    check_branches,
    check_instance_types,
    check_threshold,
    check_github,
    check_retrain_schedule,
    check_notification_email,
)


# Run in the background after a refusal: cookiecutter removes the project folder once this
# hook exits; then the empty folders a slug with "/" made above it go too.
REMOVE_EMPTY_PARENTS = """
import os, sys, time
project, top = sys.argv[1], sys.argv[2]
deadline = time.monotonic() + 30
while os.path.lexists(project) and time.monotonic() < deadline:
    time.sleep(0.05)
folder = os.path.dirname(project)
while not os.path.lexists(project) and folder.startswith(top + os.sep) and folder != top:
    try:
        os.rmdir(folder)
    except OSError:
        break
    folder = os.path.dirname(folder)
"""


def remove_folders_made_by_slug(answers, project_dir):
    """After a refusal, also remove the folders a slug with / made above the project folder.

    cookiecutter creates every folder of the slug's path but removes only the last one.
    """
    output_dir = os.path.realpath(answers.get("_output_dir") or "")
    project_dir = os.path.realpath(project_dir)
    if not answers.get("_output_dir") or os.path.dirname(project_dir) == output_dir:
        return
    if not project_dir.startswith(output_dir + os.sep):
        return
    subprocess.Popen(
        [sys.executable, "-c", REMOVE_EMPTY_PARENTS, project_dir, output_dir],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def main(answers=None):
    """Run every check; print one line per problem; return the exit status."""
    from_cookiecutter = answers is None
    answers = json.loads(ANSWERS_JSON) if answers is None else answers
    problems = [problem for check in CHECKS for problem in check(answers)]
    for problem in problems:
        print(f"ERROR {problem}", file=sys.stderr)
    if problems:
        print(
            f"{len(problems)} invalid answer(s): nothing was generated; fix them and run "
            "cookiecutter again.",
            file=sys.stderr,
        )
        if from_cookiecutter:
            remove_folders_made_by_slug(answers, os.getcwd())
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
