#!/usr/bin/env bash
# `make test`, keeping its evidence in .state/evidence/tests: JUnit XML (the gate of the first deploy) and
# the whole output, "FLOW figures" included.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.state/evidence/tests
mkdir -p "$out"
PYTEST_ARGS="--junitxml=$out/junit.xml ${PYTEST_ARGS:-}" make test 2>&1 | tee "$out/make-test.log"
