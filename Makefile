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
# services run with (the images install it), requirements-dev.lock adds the test tools.
EXPORT := .state/uv/bin/uv export --frozen --format requirements-txt --no-emit-workspace --all-packages --no-header
lock: setup
	.state/uv/bin/uv lock --python python3.11
	$(EXPORT) --no-dev -o requirements.lock
	$(EXPORT) --group dev -o requirements-dev.lock

clean:
	bash tools/images.sh clean
	rm -rf .state .venv
