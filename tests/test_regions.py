"""The regions the pre-gen hook accepts: current with cfn-lint's region schemas, and every
one of them deploys every resource type of its source provider's templates."""

import importlib.util

import pytest
from conftest import BIN, TEMPLATE, bake, run

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
    project = bake(tmp_path, source_provider=provider)
    assert cfn_lint(project, sorted(ACCEPTED[provider])) == (0, "")
    refused = sorted(set().union(*ACCEPTED.values()) - ACCEPTED[provider])
    if provider == "codecommit":
        # The same check finds the gap in a region accepted only for another provider.
        if refused:
            status, output = cfn_lint(project, refused[:1])
            assert status != 0 and "E3006" in output, output
    else:
        # A git host's gap is the connection bootstrap creates through the API.
        for region in refused:
            schemas = regions.PROVIDER_SCHEMA_MANAGER.get_resource_types(region)
            assert regions.CONNECTION_TYPE not in schemas, region


def test_regions_missing_a_resource_type_are_refused():
    # ap-south-2: no AWS::SageMaker::ModelPackageGroup; me-central-1: no SageMaker hosting
    # types; ap-east-1: no AWS::CodeConnections::Connection (cfn-lint's region schemas).
    for region in ("ap-south-2", "me-central-1"):
        for provider in ACCEPTED:
            assert region not in ACCEPTED[provider]
    assert "ap-east-1" in ACCEPTED["codecommit"]
    for host in ("github", "gitlab", "bitbucket"):
        assert "ap-east-1" not in ACCEPTED[host]
        [problem] = pre_gen.check_region({"aws_region": "ap-east-1", "source_provider": host})
        assert "AWS::CodeConnections::Connection" in problem
        assert "source_provider codecommit" in problem
    [problem] = pre_gen.check_region({"aws_region": "me-central-1", "source_provider": "github"})
    assert problem.startswith("aws_region: 'me-central-1' is not a region where")
