# `make rehearse`: the whole GitOps flow rehearsed offline, against a moto server it starts
# and stops (rehearsal/, which reads [tool.rehearsal] of pyproject.toml). Included by the Makefile.

.PHONY: rehearse

# UNTIL=<stage> stops after that stage, e.g. UNTIL=Merge (the stages: rehearsal/flow.py STAGES).
UNTIL ?=

rehearse: $(NEEDS_VENV) ## Rehearse the GitOps flow offline: build, approval, deploy, merge (moto, no AWS)
	@$(PY) -m rehearsal --python $(PY)$(if $(UNTIL), --until "$(UNTIL)")
