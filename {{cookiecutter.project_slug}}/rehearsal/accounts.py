"""Separate stage accounts in the rehearsal: moto's accounts, and who acts in which.

moto keeps one set of resources per account id. A request lands in the account its
credentials belong to: the default account for the builds' and this process's keys, the
role's account for credentials its STS AssumeRole issued (moto/sts/models.py, assume_role,
makes the key in the role's account), or the account the `x-moto-account-id` header names
(moto/core/responses.py, get_current_account), which this process's clients for another
account send. A project with stage accounts declares them in infra/account.yml (its
StagingAccountId and ProdAccountId parameters); `make bootstrap-account` deploys that
template in each of them.
"""

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ACCOUNT_TEMPLATE = Path("infra", "account.yml")
STAGE_ACCOUNT_PARAMETERS = {"staging": "StagingAccountId", "prod": "ProdAccountId"}
# The parameter make bootstrap-account sets to the pipelines' account.
PIPELINES_ACCOUNT_PARAMETER = "PipelinesAccountId"
ACCOUNT_HEADER = "x-moto-account-id"


def stage_accounts(template: Mapping[str, Any]) -> dict[str, str]:
    """stage -> account id: the defaults of infra/account.yml's account parameters."""
    parameters = template.get("Parameters", {})
    return {
        stage: str(parameters.get(name, {}).get("Default", ""))
        for stage, name in STAGE_ACCOUNT_PARAMETERS.items()
    }


def in_account(client: Any, account_id: str) -> Any:
    """client, its requests made in account_id of the moto server."""

    def add_header(request: Any, **_: Any) -> None:
        request.headers[ACCOUNT_HEADER] = account_id

    client.meta.events.register("before-sign.*.*", add_header)
    return client


def account_clients(
    make_client: Callable[[str], Any], services: tuple[str, ...], account_id: str
) -> dict[str, Any]:
    """One client per service, each making its requests in account_id."""
    return {service: in_account(make_client(service), account_id) for service in services}


def issued_to(access_key_id: str) -> tuple[str, str] | None:
    """(account, role ARN) of credentials moto's STS AssumeRole issued; None for others."""
    from moto.iam.models import iam_backends
    from moto.utilities.utils import PARTITION_NAMES

    for account_id, backends in list(iam_backends.items()):
        for partition in PARTITION_NAMES:
            key = backends[partition].access_keys.get(access_key_id)
            if key is not None and getattr(key, "role_arn", None):
                return account_id, key.role_arn
    return None
