# `make rehearse`: the whole GitOps flow rehearsed offline, against a moto server it starts
# and stops (src/{{ cookiecutter.package_name }}/rehearse/). Included by the Makefile.

.PHONY: rehearse

rehearse: $(NEEDS_VENV) ## Rehearse the GitOps flow offline: build, approval, deploy, merge (moto, no AWS)
	@$(PY) -m $(PKG).rehearse --python $(PY)
