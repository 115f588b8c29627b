#!/usr/bin/env bash
# Builds the three images once (make images) and keeps each as an OCI archive with its manifest's digest in
# .state/evidence/images: what every environment gets, pushed by digest (tools/pipeline/deploy.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=.state/evidence/images
mkdir -p "$out"
make images
eval "$(bash tools/images.sh env)"
echo "{" > "$out/digests.json"
for svc in ingest engine query; do
  rm -f "$out/$svc.oci.tar"
  podman save --format oci-archive -o "$out/$svc.oci.tar" "flow-$svc:dev"
  digest=sha256:$(skopeo inspect --raw "oci-archive:$out/$svc.oci.tar" | sha256sum | cut -d' ' -f1)
  sep=$([ "$svc" = query ] && echo "" || echo ",")
  echo "  \"$svc\": \"$digest\"$sep" >> "$out/digests.json"
done
echo "}" >> "$out/digests.json"
cat "$out/digests.json"
