"""Validates rendered Kubernetes manifests: built-in kinds against Kubernetes' schemas (kubernetes-validate,
strict: unknown fields fail), KEDA and Prometheus Operator objects against their models (cloudcoil; a
lossless round trip, since the models drop fields they do not know). Any other kind fails: nothing may
reach a cluster unchecked.

    .state/chart-venv/bin/python tools/validate_manifests.py --kube-version 1.30.0 manifests.yaml

Runs in the chart tools' venv (tools/chart-tools.sh), which has PyYAML and the validators; prints one
line per problem and exits 1 if there is any.
"""

import argparse
import importlib
import sys

import kubernetes_validate
import yaml

MODELS = {"keda.sh/v1alpha1": "cloudcoil.models.keda.v1alpha1",
          "monitoring.coreos.com/v1": "cloudcoil.models.prometheus_operator.v1"}


def problems(doc: dict, kube_version: str) -> list[str]:
    name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
    if models := MODELS.get(doc.get("apiVersion")):
        model = getattr(importlib.import_module(models), doc["kind"], None)
        if model is None:
            return [f"{name}: {models} has no such kind"]
        try:
            back = model.model_validate(doc).model_dump(by_alias=True, exclude_none=True, mode="json")
        except Exception as error:  # pydantic's ValidationError, whatever its text
            return [f"{name}: {error}"]
        return [] if back == doc else [f"{name}: fields {models} does not know"]
    try:
        kubernetes_validate.validate(doc, kube_version, strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        return [f"{name}: no schema for {doc.get('apiVersion')} in Kubernetes {kube_version}"]
    except kubernetes_validate.ValidationError as error:
        return [f"{name}: {error.message} at {'.'.join(map(str, error.path))}"]
    return []


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kube-version", required=True)
    parser.add_argument("manifests")
    args = parser.parse_args()
    with open(args.manifests) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    found = [p for d in docs for p in problems(d, args.kube_version)]
    for line in found:
        print(line)
    print(f"{len(docs)} objects checked, {len(found)} problems")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
