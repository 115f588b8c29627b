# FLOW: the two commands a new user needs are `make run` and `make test`.
.PHONY: run test setup images lock clean plan deploy

PY := .venv/bin/python

setup:
	@bash tools/bootstrap.sh

# `make run IMAGES=1` runs the three services (and the migrations) from the images instead of the venv.
run: setup
ifdef IMAGES
	@bash tools/chart-tools.sh
	@bash tools/images.sh
	@FLOW_DEV_IMAGES=1 exec $(PY) -m tools.devstack
else
	@exec $(PY) -m tools.devstack
endif

test: setup
	@$(PY) -m pytest $(PYTEST_ARGS)

# flow-ingest, flow-engine and flow-query, built with buildah (installed as root on Debian/Ubuntu).
images: setup
	@bash tools/images.sh

# tools/deploy, the one deploy command (README, "From a change to production"): `make plan` plans every
# environment without AWS or a cluster; `make deploy ENV=dev DEPLOY_ARGS='--images F --gate DIR'` deploys one.
plan: setup
	@for env in dev staging prod; do tools/deploy $$env --plan || exit 1; done

deploy: setup
	@tools/deploy $(ENV) $(DEPLOY_ARGS)

# Re-resolve the app's dependencies after changing a pyproject.toml: requirements.lock is what the
# services run with (the images install it), requirements-dev.lock adds the test tools; tools/lint-tools.lock
# (ruff, mypy, stubs) is installed on top of requirements.lock, so it follows that lock's pins.
EXPORT := .state/uv/bin/uv export --frozen --format requirements-txt --no-emit-workspace --all-packages --no-header
lock: setup
	.state/uv/bin/uv lock --python python3.11
	$(EXPORT) --no-dev -o requirements.lock
	$(EXPORT) --group dev -o requirements-dev.lock
	.state/uv/bin/uv pip compile --quiet --python-version 3.11 --generate-hashes -c requirements.lock \
		tools/lint-tools.in -o tools/lint-tools.lock

# First the PostgreSQL clusters this clone left outside it (make run's in /var/tmp when the postgres user
# cannot reach .state, test and tool runs' in the temporary folders): with the venv's Python, or any 3.11.
clean:
	@py=$(PY); [ -x "$$py" ] || py=$${FLOW_PYTHON:-python3.11}; \
	if command -v "$$py" >/dev/null; then "$$py" -m tools.devstack clean; \
	else echo "make clean: no $$py, so clusters kept outside the clone are left (see python -m tools.devstack clean)" >&2; fi
	bash tools/images.sh clean
	rm -rf .state .venv
