"""Checks and records the AWS calls a rehearsal build makes, as AWS's IAM would (iam.py).

The rehearsal puts this folder on PYTHONPATH of every process it starts for an actor (a
CodeBuild project's build and every make, pytest or AWS CLI process under it), so Python
imports this module at startup. With REHEARSAL_IAM_ACTOR, REHEARSAL_IAM_LOG,
REHEARSAL_IAM_POLICIES and REHEARSAL_IAM_ENDPOINTS set, every botocore session the process
creates gets two event hooks: `before-parameter-build` keeps the request's parameters;
`before-call`, for a request to one of the endpoints (moto and the rehearsal's stand-ins; a
test's own in-process moto answers requests addressed to AWS), evaluates it against the
actor's policies, appends one JSON line (actor, service, operation, parameters, denial) to
the log, and answers a denied call with AccessDenied, as AWS would, so the calling code
takes the path it would take in AWS. botocore is patched only when the process imports it.
A process whose AWS_PROFILE assumes a role of the templates (a build that works in a stage
account) makes its calls as that role, but for the AssumeRole itself, which the SDK makes with
the source credentials.
"""

import importlib.abc
import importlib.machinery
import importlib.util
import json
import os
import sys
from pathlib import Path

ACTOR = "REHEARSAL_IAM_ACTOR"
LOG = "REHEARSAL_IAM_LOG"
POLICIES = "REHEARSAL_IAM_POLICIES"
ENDPOINTS = "REHEARSAL_IAM_ENDPOINTS"
IAM_MODULE = Path(__file__).resolve().parent.parent / "iam.py"
_PARAMS = "rehearsal_iam_params"
_loaded = {}
# Long enough for any template body CloudFormation accepts (51,200 bytes).
_MAX_TEXT = 65536


def _json_safe(value, depth=0):
    """Parameters as JSON: bytes and streams become a marker, long text is cut."""
    if isinstance(value, dict) and depth < 8:
        return {str(key): _json_safe(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple) and depth < 8:
        return [_json_safe(item, depth + 1) for item in value]
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, str):
        return value[:_MAX_TEXT]
    return f"<{type(value).__name__}>"


def _load():
    if not _loaded:
        spec = importlib.util.spec_from_file_location("_rehearsal_iam", IAM_MODULE)
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        _loaded["iam"] = module
        _loaded["policies"] = module.read_policies(Path(os.environ[POLICIES]))
    return _loaded["iam"], _loaded["policies"]


def _acting(actor, service, operation):
    """The actor of a call: the role the process's profile assumes, if the templates have it
    (the profile is the process's: read once)."""
    if "profile actor" not in _loaded:
        iam, (_, account) = _load()
        role = iam.profile_role(os.environ)
        actors = {arn: name for name, arn in account.actor_roles.items()}
        _loaded["profile actor"] = actors.get(role) if role else None
    if (service, operation) == ("sts", "AssumeRole"):
        return actor
    return _loaded["profile actor"] or actor


def _denial(actor, service, operation, params):
    """Why AWS would refuse the call, from iam.py and the policies file ("" if allowed)."""
    iam = _load()[0]
    policies, account = _loaded["policies"]
    return iam.denial(policies, account, iam.Call(actor, service, operation, params))


def _access_denied(url, message):
    """The answer botocore raises as a ClientError with code AccessDenied."""
    from botocore.awsrequest import AWSResponse

    parsed = {
        "Error": {"Code": "AccessDenied", "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": 403},
    }
    return AWSResponse(url, 403, {}, None), parsed


def register(events, actor, log_path, endpoints):
    """Register the hooks on a botocore event emitter (a session's or a client's)."""

    def keep_parameters(params, model, context, **_):
        context[_PARAMS] = (model.service_model.service_name, model.name, _json_safe(params))

    def record(params, context, **_):
        if _PARAMS not in context:
            return
        if not any(str(params.get("url", "")).startswith(endpoint) for endpoint in endpoints):
            return
        service, operation, api_params = context[_PARAMS]
        caller = _acting(actor, service, operation)
        denied = _denial(caller, service, operation, api_params)
        line = {
            "actor": caller,
            "service": service,
            "operation": operation,
            "params": api_params,
            "denied": denied,
        }
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps(line, sort_keys=True) + "\n")
        if denied:
            return _access_denied(params["url"], f"rehearsal IAM: {denied}")
        return None

    events.register("before-parameter-build", keep_parameters)
    events.register("before-call", record)


def _patch_session_module(module):
    actor, log_path = os.environ[ACTOR], os.environ[LOG]
    endpoints = tuple(os.environ.get(ENDPOINTS, "").split())
    original_init = module.Session.__init__

    def __init__(self, *args, **kwargs):
        original_init(self, *args, **kwargs)
        register(self.get_component("event_emitter"), actor, log_path, endpoints)

    module.Session.__init__ = __init__


class _PatchOnImport(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports botocore.session as usual, then patches it."""

    name = "botocore.session"

    def find_spec(self, fullname, path=None, target=None):
        if fullname != self.name:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        _patch_session_module(module)
        sys.meta_path.remove(self)


if all(os.environ.get(name) for name in (ACTOR, LOG, POLICIES)) and (
    "botocore.session" not in sys.modules
):
    sys.meta_path.insert(0, _PatchOnImport())
