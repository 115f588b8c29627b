#!/usr/bin/env bash
# Attaches a production deploy's evidence (.state/evidence/prod/$FLOW_RUN_ID: change sets, values, rendered
# manifests and their diff, image digests, helm status, the smoke tests' JUnit XML and figures) to the
# GitHub release $FLOW_RELEASE_TAG, as one tarball. Needs the gh CLI and GH_TOKEN.
set -euo pipefail
cd "$(dirname "$0")/../.."
: "${FLOW_RUN_ID:?}" "${FLOW_RELEASE_TAG:?}"
tarball=.state/flow-prod-evidence-$FLOW_RELEASE_TAG.tar.gz
tar -czf "$tarball" -C .state/evidence/prod "$FLOW_RUN_ID"
gh release upload "$FLOW_RELEASE_TAG" "$tarball" --clobber
