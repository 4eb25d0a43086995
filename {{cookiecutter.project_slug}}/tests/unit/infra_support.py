"""The CloudFormation templates of infra/, decoded once per test process and shared read-only."""

from functools import cache
from pathlib import Path
from typing import Any

from cfnlint.decode import decode

INFRA = Path(__file__).resolve().parents[2] / "infra"


@cache
def template(name: str) -> dict[str, Any]:
    """A template of infra/, decoded by cfn-lint with its short-form tags as Ref/Fn:: keys."""
    document, problems = decode(str(INFRA / name))
    assert not problems, problems
    return document
