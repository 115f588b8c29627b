#!/usr/bin/env bash
# A pipeline job's first step, on the pipeline's Debian bookworm container (root): what `make test`,
# `make images` and tools/deploy need before they install the rest themselves (tools/bootstrap.sh,
# tools/chart-tools.sh, tools/images.sh): Python 3.11, npm (cfn-guard's package), git, skopeo (pushes by
# digest), the AWS CLI (aws eks update-kubeconfig) and gh (the release's evidence).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends ca-certificates git make sudo python3 python3-venv python3-pip \
  npm skopeo awscli gh procps
