#!/usr/bin/env bash
# One environment's deploy in the pipeline ($FLOW_ENVIRONMENT: dev, staging, prod), what a person runs by
# hand too: the images pushed by digest to its registry, tools/deploy with the stage before's test
# evidence (.state/gate) as its gate, then the smoke tests there (and, outside prod, the integration test on
# the reserved test branch), whose JUnit XML and figures join the deploy's evidence.
set -euo pipefail
cd "$(dirname "$0")/../.."
env=${FLOW_ENVIRONMENT:?dev, staging or prod}
export FLOW_RUN_ID=${FLOW_RUN_ID:-$(date -u +%Y%m%dT%H%M%SZ)}
evidence=.state/evidence/$env/$FLOW_RUN_ID
make setup
.venv/bin/python -m tools.push_images "$env" --archives .state/evidence/images -o ".state/images-$env.json"
tools/deploy "$env" --images ".state/images-$env.json" --gate .state/gate
.venv/bin/python -m tools.smoke "$env" --evidence "$evidence"
