"""Validate every cookiecutter answer before anything is generated.

Each problem is one line on stderr naming the variable, the value and the rule; the hook
exits 1 when there is any, and cookiecutter then removes the half-made output.
"""

import json
import keyword
import re
import sys

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

SLUG_PATTERN = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")
PACKAGE_PATTERN = re.compile(r"^[a-z_][a-z0-9_]*$")
INSTANCE_TYPE_PATTERN = re.compile(r"^ml\.[a-z0-9]+\.[a-z0-9]+$")
EMAIL_PATTERN = re.compile(r"^[^@\s<>]+@[^@\s<>]+\.[^@\s<>]+$")
GITHUB_REPOSITORY_PATTERN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
CONNECTION_ARN_PATTERN = re.compile(
    r"^arn:aws(?:-[a-z]+)*:(?:codeconnections|codestar-connections):[a-z0-9-]+:\d{12}:"
    r"connection/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
)
# Module names the generated code imports: a package named like one would shadow it.
SHADOWED_MODULES = frozenset(
    "app boto3 botocore moto numpy pandas sagemaker sklearn test tests xgboost".split()
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
}


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


def check_project_name(answers):
    """The project name is shown in the README and tags: it needs a visible character."""
    name = answers.get("project_name", "")
    if not name.strip() or "\n" in name:
        return [f"project_name: {name!r} must be one non-empty line"]
    return []


def check_slug(answers):
    """The slug matches the AWS-friendly pattern and every name built from it fits."""
    slug = answers.get("project_slug", "")
    if not SLUG_PATTERN.match(slug) or "--" in slug:
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
    if not PACKAGE_PATTERN.match(name) or not name.isidentifier():
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
    """The author's e-mail goes into the first commit."""
    email = answers.get("author_email", "")
    if not EMAIL_PATTERN.match(email):
        return [f"author_email: {email!r} is not an e-mail address (e.g. ml-team@example.com)"]
    return []


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
    if name == "@" or any(part in name for part in ("..", "@{", "//")):
        return False
    if any(ord(char) < 0x20 or ord(char) == 0x7F or char in " ~^:?*[\\" for char in name):
        return False
    return not any(part.startswith(".") or part.endswith(".lock") for part in name.split("/"))


def check_branches(answers):
    """Both branches are valid git branch names, and different."""
    problems = []
    for variable in ("dev_branch", "main_branch"):
        name = answers.get(variable, "")
        if not is_valid_git_branch(name):
            problems.append(f"{variable}: {name!r} is not a valid git branch name")
    if not problems and answers.get("dev_branch") == answers.get("main_branch"):
        problems.append(
            f"main_branch: {answers.get('main_branch')!r} is the same as dev_branch; "
            "the two branches must differ"
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
        if not INSTANCE_TYPE_PATTERN.match(str(answers.get(variable, "")))
    ]


def check_threshold(answers):
    """The quality threshold is a number in (0, 1]."""
    raw = answers.get("quality_threshold", "")
    try:
        value = float(raw)
    except (TypeError, ValueError):
        value = float("nan")
    if not 0 < value <= 1:  # NaN fails this comparison too
        return [f"quality_threshold: {raw!r} must be a number greater than 0 and at most 1"]
    return []


def check_github(answers):
    """With GitHub as the source, the repository and the connection ARN are well formed."""
    if answers.get("source_provider") != "github":
        return []
    problems = []
    repository = answers.get("github_repository", "")
    if not GITHUB_REPOSITORY_PATTERN.match(repository):
        problems.append(
            f"github_repository: {repository!r} must be owner/name (e.g. my-org/churn-model)"
        )
    arn = answers.get("codeconnections_arn", "")
    if not CONNECTION_ARN_PATTERN.match(arn):
        problems.append(
            f"codeconnections_arn: {arn!r} must be a connection ARN like "
            "arn:aws:codeconnections:us-east-1:123456789012:connection/<uuid> "
            "(create the connection in the AWS console first)"
        )
    return problems


CHECKS = (
    check_choices,
    check_prod_approval,
    check_project_name,
    check_slug,
    check_package_name,
    check_author,
    check_region,
    check_branches,
    check_instance_types,
    check_threshold,
    check_github,
)


def main(answers=None):
    """Run every check; print one line per problem; return the exit status."""
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
    return 1 if problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
