"""Pushes the images built once (tools/pipeline/build-images.sh: ARCHIVES/<svc>.oci.tar and digests.json) to
an environment's registry by digest, and writes what tools/deploy takes as --images.

    python -m tools.push_images dev --archives .state/evidence/images -o .state/images-dev.json

The repositories are the registry stack's outputs (flow-registry<suffix>; tools/deploy ENV --stacks-only
makes it the first time). skopeo copies each archive unchanged (--preserve-digests: it fails rather than
convert the manifest), tagged with the release ($FLOW_RELEASE_TAG, else the digest's first 12 digits: ECR's
tags are immutable); ECR is then asked for that very digest. The same bytes go to every environment, so
each gets the digest the tests ran.
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import boto3

from tools import stack_values
from tools.deploy import SERVICES, load_environment


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.push_images", description=__doc__.split("\n\n")[0])
    parser.add_argument("environment", choices=("dev", "staging", "prod"))
    parser.add_argument("--archives", type=Path, required=True, help="the folder of <svc>.oci.tar and digests.json")
    parser.add_argument("-o", "--output", type=Path, required=True)
    args = parser.parse_args(argv)
    env = load_environment(args.environment, plan=False, only=("region", "suffix"))[0]
    session = boto3.session.Session(region_name=env["region"])
    registry = stack_values.stack_outputs(session.client("cloudformation"), f"flow-registry{env['suffix']}")
    if registry is None:
        sys.exit(f"no stack flow-registry{env['suffix']}: run tools/deploy {args.environment} --stacks-only first")
    ecr = session.client("ecr")
    # ECR's login, in an auth file only this user can read: never on a command line, never printed.
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    authfile = Path(tempfile.mkdtemp()) / "auth.json"
    authfile.touch(mode=0o600)
    host = registry["IngestRepositoryUri"].split("/", 1)[0]
    authfile.write_text(json.dumps({"auths": {host: {"auth": token}}}))
    digests = json.loads((args.archives / "digests.json").read_text())
    images = {}
    for svc in SERVICES:
        repository, digest = registry[f"{svc.capitalize()}RepositoryUri"], digests[svc]
        tag = os.environ.get("FLOW_RELEASE_TAG") or digest.split(":")[1][:12]
        subprocess.run(["skopeo", "copy", "--preserve-digests", "--dest-authfile", str(authfile),
                        f"oci-archive:{args.archives / f'{svc}.oci.tar'}", f"docker://{repository}:{tag}"], check=True)
        ecr.describe_images(repositoryName=repository.split("/", 1)[1], imageIds=[{"imageDigest": digest}])
        images[svc] = f"{repository}@{digest}"
        print(f"{svc}: {images[svc]}")
    shutil.rmtree(authfile.parent)
    args.output.write_text(json.dumps(images, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
