"""The regions the pre-gen hook accepts: current with cfn-lint's region schemas, and every
one of them deploys every resource type of its source provider's templates."""

import importlib.util

import pytest
from conftest import BIN, GITHUB_ANSWERS, TEMPLATE, bake, run

spec = importlib.util.spec_from_file_location("regions", TEMPLATE / "scripts" / "regions.py")
regions = importlib.util.module_from_spec(spec)
spec.loader.exec_module(regions)
hook_spec = importlib.util.spec_from_file_location(
    "pre_gen", TEMPLATE / "hooks" / "pre_gen_project.py"
)
pre_gen = importlib.util.module_from_spec(hook_spec)
hook_spec.loader.exec_module(pre_gen)
ACCEPTED = pre_gen.REGIONS_BY_SOURCE_PROVIDER


def test_hook_regions_are_what_the_schemas_give_now():
    assert regions.main(["--check"]) == 0, "run make regions"


def cfn_lint(project, region_list):
    """cfn-lint over the project's templates in the given regions: (exit status, output)."""
    templates = sorted(str(path) for path in (project / "infra").glob("*.yml"))
    result = run([str(BIN / "cfn-lint"), "--regions", *region_list, "--", *templates], project)
    return result.returncode, result.stdout + result.stderr


@pytest.mark.parametrize("provider", sorted(ACCEPTED))
def test_every_accepted_region_has_every_resource_type(provider, tmp_path):
    answers = {"source_provider": provider, **(GITHUB_ANSWERS if provider == "github" else {})}
    project = bake(tmp_path, **answers)
    assert cfn_lint(project, sorted(ACCEPTED[provider])) == (0, "")
    # The same check finds the gap in a region accepted only for another provider.
    refused = sorted(set().union(*ACCEPTED.values()) - ACCEPTED[provider])
    if refused:
        status, output = cfn_lint(project, refused[:1])
        assert status != 0 and "E3006" in output, output


def test_regions_missing_a_resource_type_are_refused():
    # ap-south-2: no AWS::SageMaker::ModelPackageGroup; me-central-1: no SageMaker hosting
    # types; af-south-1: no AWS::CodeCommit::Repository (cfn-lint's region schemas).
    for region in ("ap-south-2", "me-central-1"):
        for provider in ACCEPTED:
            assert region not in ACCEPTED[provider]
    assert "af-south-1" in ACCEPTED["github"] and "af-south-1" not in ACCEPTED["codecommit"]
    [problem] = pre_gen.check_region({"aws_region": "af-south-1", "source_provider": "codecommit"})
    assert "AWS::CodeCommit::Repository" in problem and "source_provider github" in problem
    [problem] = pre_gen.check_region({"aws_region": "me-central-1", "source_provider": "github"})
    assert problem.startswith("aws_region: 'me-central-1' is not a region where")
