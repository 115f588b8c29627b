# FLOW: the two commands a new user needs are `make run` and `make test`.
.PHONY: run test setup lock clean

PY := .venv/bin/python

setup:
	@bash tools/bootstrap.sh

run: setup
	@exec $(PY) -m tools.devstack

test: setup
	@$(PY) -m pytest $(PYTEST_ARGS)

# Re-resolve the app's dependencies after changing a pyproject.toml: requirements.lock is what the
# services run with (the images install it), requirements-dev.lock adds the test tools.
EXPORT := .state/uv/bin/uv export --frozen --format requirements-txt --no-emit-workspace --all-packages --no-header
lock: setup
	.state/uv/bin/uv lock --python python3.11
	$(EXPORT) --no-dev -o requirements.lock
	$(EXPORT) --group dev -o requirements-dev.lock

clean:
	rm -rf .state .venv
