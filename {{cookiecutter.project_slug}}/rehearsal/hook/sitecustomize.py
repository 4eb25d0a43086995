"""Records the AWS calls a rehearsal build makes, for the rehearsal's IAM check (iam.py).

The rehearsal puts this folder on PYTHONPATH of every process it starts for an actor (a
CodeBuild project's build and every make, pytest or AWS CLI process under it), so Python
imports this module at startup. With REHEARSAL_IAM_ACTOR, REHEARSAL_IAM_LOG and
REHEARSAL_IAM_ENDPOINTS set, every botocore session the process creates gets two event
hooks: `before-parameter-build` keeps the request's parameters, `before-call` appends one
JSON line per call (actor, service, operation, parameters) to the log when the request goes
to one of the endpoints (moto and the rehearsal's stand-ins; a test's own in-process moto
answers requests addressed to AWS). botocore itself is patched only when the process imports it.
"""

import importlib.abc
import importlib.machinery
import json
import os
import sys

ACTOR = "REHEARSAL_IAM_ACTOR"
LOG = "REHEARSAL_IAM_LOG"
ENDPOINTS = "REHEARSAL_IAM_ENDPOINTS"
_PARAMS = "rehearsal_iam_params"
_MAX_TEXT = 2048


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


def register(events, actor, log_path, endpoints):
    """Register the recording hooks on a botocore event emitter (a session's or a client's)."""

    def keep_parameters(params, model, context, **_):
        context[_PARAMS] = (model.service_model.service_name, model.name, _json_safe(params))

    def record(params, context, **_):
        if _PARAMS not in context:
            return
        if not any(str(params.get("url", "")).startswith(endpoint) for endpoint in endpoints):
            return
        service, operation, api_params = context[_PARAMS]
        line = {"actor": actor, "service": service, "operation": operation, "params": api_params}
        with open(log_path, "a", encoding="utf-8") as log:
            log.write(json.dumps(line, sort_keys=True) + "\n")

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


if os.environ.get(ACTOR) and os.environ.get(LOG) and "botocore.session" not in sys.modules:
    sys.meta_path.insert(0, _PatchOnImport())
