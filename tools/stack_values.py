"""Helm values for charts/flow from the outputs of FLOW's CloudFormation stacks.

    python -m tools.stack_values --region eu-west-1 [--suffix=-staging] [-o values-aws.json]

reads the stacks flow-messaging, flow-data, flow-registry, flow-archive and flow-identity (each name plus --suffix;
a stack that does not exist is left out) with CloudFormation's DescribeStacks and writes the values
they determine: the region, the topics and queue, the databases in secretsManager mode (URLs without
credentials, flow_app's secret), the image repositories, the archive bucket and the pods' IAM roles. JSON is YAML, so the
file goes to `helm install -f` as is; the values only people know (auth.*, database.secretName for the
migrations, ...) go in a values file of their own next to it. Nothing secret is read or written: only
ARNs, names and host names.

The archive bucket is written as `archive.bucket`; turning the archive on (`archive.enabled`, and its
`retentionDays` for the environment) is left to you.
"""

import argparse
import json
import sys
from pathlib import Path

import boto3
from botocore.exceptions import ClientError

__all__ = ["STACKS", "chart_values", "stack_outputs"]

# Which stack a part of the values comes from: part -> stack name (before the suffix).
STACKS = {"messaging": "flow-messaging", "data": "flow-data", "registry": "flow-registry", "archive": "flow-archive",
          "identity": "flow-identity"}
SERVICES = ("ingest", "engine", "query")


def stack_outputs(cfn, name: str) -> dict[str, str] | None:
    """A stack's outputs by key, or None when there is no such stack."""
    try:
        [stack] = cfn.describe_stacks(StackName=name)["Stacks"]
    except ClientError as error:
        if "does not exist" in str(error):
            return None
        raise
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def _url(host: str, port: str, database: str) -> str:
    return f"postgresql+asyncpg://{host}:{port}/{database}"


def chart_values(outputs: dict[str, dict[str, str]], region: str) -> dict:
    """The chart's values from the stacks' outputs (a part of `outputs` per key of STACKS)."""
    values: dict = {"aws": {"region": region}}
    if m := outputs.get("messaging"):
        values["messaging"] = {"requestTopicArn": m["RequestTopicArn"], "callbackTopicArn": m["CallbackTopicArn"],
                               "queueUrl": m["QueueUrl"]}
    if d := outputs.get("data"):
        # flow_app's secret for both: the replica has the same logins as the primary. The secret's host is
        # the primary's; the chart tells query to take only the login from it and the server from its URL.
        values["database"] = {
            "mode": "secretsManager",
            "primaryUrl": _url(d["PrimaryEndpoint"], d["PrimaryPort"], d["DatabaseName"]),
            "replicaUrl": _url(d["ReadEndpoint"], d["ReadPort"], d["DatabaseName"]),
            "primarySecretId": d["AppSecretArn"],
            "replicaSecretId": d["AppSecretArn"],
        }
    if r := outputs.get("registry"):
        for svc in SERVICES:
            values.setdefault(svc, {})["image"] = {"repository": r[f"{svc.capitalize()}RepositoryUri"]}
    if a := outputs.get("archive"):
        values["archive"] = {"bucket": a["ArchiveBucketName"]}
    if i := outputs.get("identity"):
        for part in (*SERVICES, "reconcile", "archive"):
            values.setdefault(part, {})["serviceAccount"] = {"roleArn": i[f"{part.capitalize()}RoleArn"]}
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.stack_values", description=__doc__.split("\n\n")[0])
    parser.add_argument("--region", required=True, help="where the stacks are")
    parser.add_argument("--suffix", default="", help="the stacks' NameSuffix, appended to their names too (e.g. --suffix=-staging)")
    parser.add_argument("--endpoint-url", help="a CloudFormation emulator's URL (LocalStack); default AWS")
    parser.add_argument("-o", "--output", type=Path, help="the values file to write; default standard output")
    args = parser.parse_args(argv)
    cfn = boto3.client("cloudformation", region_name=args.region, endpoint_url=args.endpoint_url)
    outputs = {part: found for part, name in STACKS.items()
               if (found := stack_outputs(cfn, name + args.suffix)) is not None}
    if "messaging" not in outputs:
        print(f"no stack {STACKS['messaging'] + args.suffix} in {args.region}: deploy messaging.yaml first", file=sys.stderr)
        return 1
    text = json.dumps(chart_values(outputs, args.region), indent=2) + "\n"
    if args.output:
        args.output.write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
