"""The one deploy command: `tools/deploy ENV` (dev, staging, prod), run alike by the pipeline and by a person.

    tools/deploy dev --plan                            no AWS, no cluster: what a deploy would do
    tools/deploy dev --images images.json --gate DIR   the deploy itself

In order, each step refusing to go on when the one before failed:
1. checks: the environment's file (infra/env/ENV.json) resolved (every ${NAME} set), its stack parameters
   against the templates' (known, required, allowed values and patterns, numbers), images given by digest
   and present in the environment's registry, the AWS account is the environment's, and the tests of the
   stage before (the JUnit XML in --gate) all passed, none failed or skipped;
2. the stacks in order (registry, messaging, data, archive, identity, and messaging again once the roles
   exist), each as a CloudFormation change set that is printed and kept before it is executed;
3. the stacks' outputs as Helm values (tools/stack_values.py), with charts/flow/env/ENV.yaml, the
   environment's own values and the image digests: `helm lint --strict`, `helm template` and every
   rendered object validated (tools/validate_manifests.py), a diff against what runs now;
4. `helm upgrade --install --atomic` with the images by digest (never a tag), then `helm status`.

--plan does all of that without AWS or a cluster: the change sets are made against LocalStack (a
throwaway one, or --aws-endpoint) and never executed, the outputs of stacks and the account's values
are marked stand-ins, the digests a marked placeholder, and the diff is against the previous plan's
manifests. Every run keeps its evidence in .state/evidence/ENV/RUN (RUN: $FLOW_RUN_ID, else the time):
the change sets, the values, the rendered manifests and their diff, images.json, helm's status and a
summary.json; `latest` points at the newest.
"""

import argparse
import difflib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from xml.etree import ElementTree

import boto3
from botocore.exceptions import ClientError, WaiterError

from tools import stack_values

ROOT = Path(__file__).resolve().parent.parent
STATE = ROOT / ".state"
HELM = STATE / "bin" / "helm"
CHART = ROOT / "charts" / "flow"
CHART_PYTHON = STATE / "chart-venv" / "bin" / "python"
TEMPLATES = ROOT / "infra" / "cloudformation"
ENVIRONMENTS = ("dev", "staging", "prod")
SERVICES = stack_values.SERVICES
# Messaging comes again after identity: its policies name the roles identity makes from its outputs.
ORDER = ("registry", "messaging", "data", "archive", "identity", "messaging")
CAPABILITIES = ["CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]
DIGEST = re.compile(r"^(?P<repository>[^@\s]+)@(?P<digest>sha256:[0-9a-f]{64})$")
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64  # --plan only: no image was built
PLAN_ACCOUNT = "000000000000"

# What --plan assumes for the values only the AWS account knows (a deploy reads them from the environment).
PLAN_STANDINS = {
    "FLOW_AWS_ACCOUNT_ID": PLAN_ACCOUNT,
    "FLOW_EKS_CLUSTER": "plan-standin-cluster",
    "FLOW_VPC_ID": "vpc-0000000000000000a",
    "FLOW_SUBNET_IDS": "subnet-0000000000000000a,subnet-0000000000000000b",
    "FLOW_NODE_SECURITY_GROUP_ID": "sg-0000000000000000a",
    "FLOW_OIDC_PROVIDER_ARN": f"arn:aws:iam::{PLAN_ACCOUNT}:oidc-provider/oidc.eks.eu-west-1.amazonaws.com/id/PLANSTANDIN",
    "FLOW_OIDC_ISSUER": "oidc.eks.eu-west-1.amazonaws.com/id/PLANSTANDIN",
    "FLOW_AUTH_ISSUER": "https://issuer.plan-standin.invalid/v2.0",
    "FLOW_AUTH_AUDIENCE": "api://flow",
    "FLOW_SMOKE_CLIENT_ID": "plan-standin-pipeline-client",
    "FLOW_INGEST_URL": "https://ingest.plan-standin.invalid",
    "FLOW_QUERY_URL": "https://query.plan-standin.invalid",
    "FLOW_TOKEN_URL": "https://issuer.plan-standin.invalid/token",
    "FLOW_SMOKE_SCOPE": "api://flow/.default",
}


def plan_outputs(region: str, suffix: str) -> dict[str, dict[str, str]]:
    """Stand-ins for the stacks' outputs, shaped as AWS gives them (--plan, and stacks not made yet)."""
    arn = f"{region}:{PLAN_ACCOUNT}"
    return {
        "registry": {f"{s.capitalize()}RepositoryUri": f"{PLAN_ACCOUNT}.dkr.ecr.{region}.amazonaws.com/flow-{s}{suffix}"
                     for s in SERVICES} | {"RegistryKeyArn": f"arn:aws:kms:{arn}:key/00000000-0000-0000-0000-00000000000a"},
        "messaging": {"RequestTopicArn": f"arn:aws:sns:{arn}:FlowRequest{suffix}",
                      "CallbackTopicArn": f"arn:aws:sns:{arn}:FlowCallback{suffix}",
                      "QueueUrl": f"https://sqs.{region}.amazonaws.com/{PLAN_ACCOUNT}/FlowTransaction{suffix}",
                      "QueueArn": f"arn:aws:sqs:{arn}:FlowTransaction{suffix}",
                      "DlqArn": f"arn:aws:sqs:{arn}:FlowTransactionDlq{suffix}",
                      "MessagingKeyArn": f"arn:aws:kms:{arn}:key/00000000-0000-0000-0000-00000000000b"},
        "data": {"PrimaryEndpoint": f"flow{suffix}.plan-standin.{region}.rds.amazonaws.com", "PrimaryPort": "5432",
                 "ReadEndpoint": f"flow{suffix}-replica-1.plan-standin.{region}.rds.amazonaws.com", "ReadPort": "5432",
                 "DatabaseName": "flow", "AppSecretArn": f"arn:aws:secretsmanager:{arn}:secret:flow/database/app-Plan00",
                 "MasterSecretArn": f"arn:aws:secretsmanager:{arn}:secret:rds!db-plan-Plan00",
                 "DataKeyArn": f"arn:aws:kms:{arn}:key/00000000-0000-0000-0000-00000000000c"},
        "archive": {"ArchiveBucketName": f"flow-archive-plan-standin{suffix}",
                    "ArchiveBucketArn": f"arn:aws:s3:::flow-archive-plan-standin{suffix}",
                    "ArchiveKeyArn": f"arn:aws:kms:{arn}:key/00000000-0000-0000-0000-00000000000d"},
        "identity": {f"{p.capitalize()}RoleArn": f"arn:aws:iam::{PLAN_ACCOUNT}:role/plan-standin-flow-{p}{suffix}"
                     for p in (*SERVICES, "reconcile", "archive")},
    }


class Refused(Exception):
    """A check failed: nothing more is done."""


# --- the environment -------------------------------------------------------------------------------

VARIABLE = re.compile(r"\$\{([A-Z0-9_]+)(:-([^}]*))?\}")


def resolve(value, plan: bool, used: dict[str, str], missing: set[str]):
    """`value` with every ${NAME} (or ${NAME:-default}) replaced from the environment, keys included;
    in --plan an unset NAME takes its stand-in. Records what came from where in `used`/`missing`."""
    if isinstance(value, dict):
        return {resolve(k, plan, used, missing): resolve(v, plan, used, missing) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, plan, used, missing) for v in value]
    if not isinstance(value, str):
        return value

    def one(match: re.Match) -> str:
        name, has_default, default = match.group(1), match.group(2), match.group(3) or ""
        if name in os.environ:
            used[name] = "environment"
            return os.environ[name]
        if has_default:
            return default
        if plan and name in PLAN_STANDINS:
            used[name] = "plan stand-in"
            return PLAN_STANDINS[name]
        missing.add(name)
        return match.group(0)

    return VARIABLE.sub(one, value)


def load_environment(name: str, plan: bool, only: tuple[str, ...] | None = None) -> tuple[dict, dict[str, str]]:
    """infra/env/NAME.json resolved (only the sections `only` names, if given), and where each variable came from."""
    raw = json.loads((ROOT / "infra" / "env" / f"{name}.json").read_text())
    used: dict[str, str] = {}
    missing: set[str] = set()
    env = resolve({k: v for k, v in raw.items() if k != "description" and (only is None or k in only)}, plan, used, missing)
    if missing:
        raise Refused(f"infra/env/{name}.json needs {', '.join(sorted(missing))} in the environment")
    return env, used


# --- checks ----------------------------------------------------------------------------------------

# CloudFormation's YAML, short-form tags (!Ref x, !Equals [...]) read as their Fn:: objects: each template's
# parameters, conditions and which resource depends on which condition.
_TEMPLATE_FACTS = r"""
import json, sys, yaml
def tag(loader, suffix, node):
    value = (loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else
             loader.construct_sequence(node, deep=True) if isinstance(node, yaml.SequenceNode) else
             loader.construct_mapping(node, deep=True))
    return {"Ref": value} if suffix == "Ref" else {("Condition" if suffix == "Condition" else "Fn::" + suffix): value}
yaml.SafeLoader.add_multi_constructor("!", tag)
facts = {}
for path in sys.argv[1:]:
    doc = yaml.safe_load(open(path))
    facts[path] = {"Parameters": doc.get("Parameters", {}), "Conditions": doc.get("Conditions", {}),
                   "ResourceConditions": {k: r["Condition"] for k, r in doc["Resources"].items() if "Condition" in r}}
print(json.dumps(facts))
"""


def template_facts() -> dict[str, dict]:
    """Per template (by stack name): Parameters, Conditions, ResourceConditions. PyYAML lives in the chart
    tools' venv, not the app's."""
    out = run([CHART_PYTHON, "-c", _TEMPLATE_FACTS, *sorted(TEMPLATES.glob("*.yaml"))])
    return {Path(p).stem: facts for p, facts in json.loads(out).items()}


def condition_values(facts: dict, parameters: dict) -> dict[str, bool | None]:
    """The template's conditions for these parameters (None: a function this does not evaluate). LocalStack's
    change sets list every resource, whatever its condition: the plan marks those CloudFormation would skip."""
    values = {k: str(parameters.get(k, spec.get("Default", ""))) for k, spec in facts["Parameters"].items()}

    def ev(node):
        if isinstance(node, dict) and len(node) == 1:
            [(fn, arg)] = node.items()
            if fn == "Ref":
                return values.get(arg)
            if fn == "Condition":
                return ev(facts["Conditions"][arg])
            args = [ev(a) for a in arg] if isinstance(arg, list) else None
            if args is None or None in args:
                return None
            return {"Fn::Equals": lambda: str(args[0]) == str(args[1]), "Fn::Not": lambda: not args[0],
                    "Fn::And": lambda: all(args), "Fn::Or": lambda: any(args)}.get(fn, lambda: None)()
        return node

    return {name: ev(node) for name, node in facts["Conditions"].items()}


def check_parameters(stack: str, declared: dict, given: dict) -> list[str]:
    """What CloudFormation would refuse at deploy time, found now (LocalStack checks only that required
    parameters are there): unknown names, missing required ones, values outside AllowedValues or
    AllowedPattern, numbers that are not."""
    problems = [f"{stack}: {k} is not a parameter of {stack}.yaml" for k in given if k not in declared]
    for key, spec in declared.items():
        if key not in given:
            if "Default" not in spec:
                problems.append(f"{stack}: {key} is required")
            continue
        value = str(given[key])
        items = value.split(",") if spec.get("Type", "").startswith("List<") or spec.get("Type") == "CommaDelimitedList" else [value]
        for item in items:
            if "AllowedValues" in spec and item not in [str(v) for v in spec["AllowedValues"]]:
                problems.append(f"{stack}: {key}={item!r} is not one of {spec['AllowedValues']}")
            if "AllowedPattern" in spec and not re.fullmatch(spec["AllowedPattern"], item):
                problems.append(f"{stack}: {key}={item!r} does not match {spec['AllowedPattern']}")
            if spec.get("Type") == "Number" and not re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", item):
                problems.append(f"{stack}: {key}={item!r} is not a number")
    return problems


def check_images(path: Path | None, registry: dict[str, str], plan: bool) -> dict[str, str]:
    """service -> repository@sha256:... in this environment's registry. A tag is never accepted."""
    if path is None:
        if not plan:
            raise Refused("--images FILE is required: {\"ingest\": \"<repository>@sha256:...\", ...}")
        return {s: f"{registry[f'{s.capitalize()}RepositoryUri']}@{PLACEHOLDER_DIGEST}" for s in SERVICES}
    images = json.loads(path.read_text())
    problems = []
    for svc in SERVICES:
        ref = images.get(svc, "")
        match = DIGEST.match(ref)
        if not match:
            problems.append(f"{svc}: {ref!r} is not <repository>@sha256:<64 hex digits> (tags are never deployed)")
        elif match["repository"] != registry[f"{svc.capitalize()}RepositoryUri"]:
            problems.append(f"{svc}: {match['repository']} is not this environment's repository "
                            f"{registry[f'{svc.capitalize()}RepositoryUri']}")
    if problems:
        raise Refused("images: " + "; ".join(problems))
    return {s: images[s] for s in SERVICES}


def check_gate(folders: list[Path], gated_by: str) -> dict:
    """Every JUnit XML file under `folders` (the stage before's evidence): at least one test, and
    every test passed: none failed, errored or skipped."""
    files = sorted(f for folder in folders for f in Path(folder).rglob("*.xml"))
    totals = {"files": len(files), "tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for f in files:
        root = ElementTree.parse(f).getroot()
        for suite in ([root] if root.tag == "testsuite" else root.iter("testsuite")):
            for key in ("tests", "failures", "errors", "skipped"):
                totals[key] += int(suite.get(key, 0))
    if not totals["tests"] or totals["failures"] or totals["errors"] or totals["skipped"]:
        raise Refused(f"the tests of {gated_by} did not all pass: {totals} in {', '.join(map(str, folders)) or 'nothing'}")
    return totals


# --- CloudFormation --------------------------------------------------------------------------------

def stack_status(cfn, name: str) -> str | None:
    try:
        return cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"]
    except ClientError as error:
        if "does not exist" in str(error):
            return None
        raise


def make_change_set(cfn, stack: str, name: str, parameters: dict, run_id: str) -> dict:
    """A change set of `stack`, described in full. An unchanged stack gives one with no Changes."""
    status = stack_status(cfn, name)
    kind = "CREATE" if status in (None, "REVIEW_IN_PROGRESS") else "UPDATE"
    created = cfn.create_change_set(
        StackName=name, ChangeSetName=f"flow-{re.sub('[^A-Za-z0-9-]', '-', run_id)}", ChangeSetType=kind,
        TemplateBody=(TEMPLATES / f"{stack}.yaml").read_text(), Capabilities=CAPABILITIES,
        Parameters=[{"ParameterKey": k, "ParameterValue": str(v)} for k, v in parameters.items()])
    deadline = time.monotonic() + 300
    while True:
        described = cfn.describe_change_set(ChangeSetName=created["Id"])
        if described["Status"] not in ("CREATE_PENDING", "CREATE_IN_PROGRESS"):
            break
        if time.monotonic() > deadline:
            raise Refused(f"{name}: change set still {described['Status']} after 5 minutes")
        time.sleep(1)
    changes = described.get("Changes", [])
    while described.get("NextToken"):
        described = cfn.describe_change_set(ChangeSetName=created["Id"], NextToken=described["NextToken"])
        changes += described.get("Changes", [])
    reason = described.get("StatusReason") or ""
    if described["Status"] == "FAILED" and not re.search("didn't contain changes|No updates", reason):
        raise Refused(f"{name}: change set failed: {reason}")
    return {"StackName": name, "Type": kind, "Id": created["Id"], "Status": described["Status"],
            "StatusReason": reason, "Parameters": parameters, "Changes": changes}


def show_change_set(change_set: dict, skipped: dict[str, str]) -> None:
    """Prints the change set; `skipped`: resources whose condition is false (logical id -> condition)."""
    changes = [c["ResourceChange"] for c in change_set["Changes"]]
    say(f"  {change_set['StackName']} ({change_set['Type']}): {len(changes) or 'no'} change{'s' * (len(changes) != 1)}")
    for c in changes:
        note = {"True": "  REPLACES", "Conditional": "  may replace"}.get(c.get("Replacement"), "")
        if c["LogicalResourceId"] in skipped:
            note += f"  (condition {skipped[c['LogicalResourceId']]} is false: not on AWS)"
        say(f"    {c['Action']:<7} {c['LogicalResourceId']:<34} {c['ResourceType']}{note}")


def execute_change_set(cfn, change_set: dict) -> None:
    cfn.execute_change_set(ChangeSetName=change_set["Id"])
    waiter = cfn.get_waiter("stack_create_complete" if change_set["Type"] == "CREATE" else "stack_update_complete")
    try:
        waiter.wait(StackName=change_set["StackName"], WaiterConfig={"Delay": 10, "MaxAttempts": 360})
    except WaiterError as error:
        events = cfn.describe_stack_events(StackName=change_set["StackName"])["StackEvents"][:10]
        failed = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}" for e in events if "FAILED" in e["ResourceStatus"]]
        raise Refused(f"{change_set['StackName']} did not complete ({error}): {'; '.join(failed)}") from None


def discard_change_set(cfn, change_set: dict) -> None:
    """--plan: the change set is evidence only; a stack it brought into being (REVIEW_IN_PROGRESS) goes too."""
    cfn.delete_change_set(ChangeSetName=change_set["Id"])
    if change_set["Type"] == "CREATE":
        cfn.delete_stack(StackName=change_set["StackName"])


def parameters_for(stack: str, env: dict, declared: dict, outputs: dict[str, dict[str, str]]) -> dict:
    """The environment's parameters of `stack`, plus every other parameter the template declares that
    another stack outputs under the same name (identity's ARNs; messaging's roles)."""
    given = dict(env["stacks"][stack])
    for key in declared:
        if key not in given:
            for part, found in outputs.items():
                if part != stack and key in found:
                    given[key] = found[key]
    return given


# --- Helm ------------------------------------------------------------------------------------------

def render(env: dict, values: list[Path], evidence: Path) -> Path:
    """helm lint --strict, helm template and every object validated; the manifests are kept."""
    args = [CHART, "--namespace", env["namespace"], "--kube-version", env["kubeVersion"], *sum((["-f", v] for v in values), [])]
    run([HELM, "lint", "--strict", *args])
    manifests = evidence / "manifests.yaml"
    manifests.write_text(run([HELM, "template", env["release"], *args,
                              "--api-versions", "keda.sh/v1alpha1", "--api-versions", "monitoring.coreos.com/v1"]))
    say("  " + run([CHART_PYTHON, ROOT / "tools" / "validate_manifests.py", "--kube-version", env["kubeVersion"],
                    manifests]).strip().splitlines()[-1])
    return manifests


def diff_manifests(previous: str | None, label: str, manifests: Path, evidence: Path) -> str:
    new = manifests.read_text().splitlines(keepends=True)
    old = (previous or "").splitlines(keepends=True)
    diff = list(difflib.unified_diff(old, new, fromfile=label, tofile="this run"))
    (evidence / "manifests.diff").write_text("".join(diff))
    added = sum(1 for line in diff if line.startswith("+") and not line.startswith("+++"))
    removed = sum(1 for line in diff if line.startswith("-") and not line.startswith("---"))
    return f"{'first render' if previous is None else f'against {label}'}: +{added} -{removed} lines"


def previous_plan(env_dir: Path, this_run: Path) -> tuple[str | None, str]:
    """The manifests of the environment's newest earlier plan that finished (its summary says so)."""
    def finished_plan(run: Path) -> bool:
        summary = run / "summary.json"
        return summary.exists() and json.loads(summary.read_text()).get("mode") == "plan"
    runs = sorted((p for p in env_dir.iterdir() if p.is_dir() and not p.is_symlink() and p != this_run and finished_plan(p)),
                  key=lambda p: (p / "summary.json").stat().st_mtime)
    return ((runs[-1] / "manifests.yaml").read_text(), f"{runs[-1].name}/manifests.yaml") if runs else (None, "nothing")


# --- the run ---------------------------------------------------------------------------------------

def say(line: str) -> None:
    print(line, flush=True)
    if _log is not None:
        _log.write(line + "\n")


_log = None


def run(args: list, **kwargs) -> str:
    done = subprocess.run([str(a) for a in args], capture_output=True, text=True, cwd=ROOT, **kwargs)
    if done.returncode != 0:
        raise Refused(f"{Path(str(args[0])).name} {args[1] if len(args) > 1 else ''} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def write_json(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value, indent=2, default=str) + "\n")


def deploy(args: argparse.Namespace, evidence: Path) -> dict:
    plan = args.plan
    env, variables = load_environment(args.environment, plan)
    summary: dict = {"environment": args.environment, "mode": "plan" if plan else "deploy", "run": evidence.name,
                     "commit": subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=ROOT).stdout.strip(),
                     "started": datetime.now(timezone.utc).isoformat(timespec="seconds"), "variables": variables}
    say(f"{'plan' if plan else 'deploy'} {args.environment}: {env['region']}, namespace {env['namespace']}, evidence {evidence.relative_to(ROOT)}")
    stand_ins = sorted(k for k, v in variables.items() if v == "plan stand-in")
    if stand_ins:
        say(f"  PLAN STAND-INS (not this account's values): {', '.join(stand_ins)}")

    say("checks")
    session = boto3.session.Session(region_name=env["region"])
    if plan:
        cfn = boto3.client("cloudformation", region_name=env["region"], endpoint_url=args.aws_endpoint,
                           aws_access_key_id="test", aws_secret_access_key="test")
    else:
        account = session.client("sts").get_caller_identity()["Account"]
        if account != env["account"]:
            raise Refused(f"these credentials are for account {account}, {args.environment} is {env['account']}")
        say(f"  AWS account {account}: {args.environment}'s")
        summary["gate"] = check_gate(args.gate, env["gatedBy"])
        say(f"  the tests of {env['gatedBy']}: {summary['gate']['tests']} passed, none failed or skipped")
        cfn = session.client("cloudformation")
        if "KUBECONFIG" not in os.environ:  # the environment's cluster, in a kubeconfig of this run's own
            kubeconfig = STATE / "kube" / f"{args.environment}.config"
            kubeconfig.parent.mkdir(parents=True, exist_ok=True)
            run(["aws", "eks", "update-kubeconfig", "--name", env["cluster"], "--region", env["region"], "--kubeconfig", kubeconfig])
            os.environ["KUBECONFIG"] = str(kubeconfig)
    standins = plan_outputs(env["region"], env["suffix"])

    def current_outputs() -> dict[str, dict[str, str]]:
        if plan:
            return standins
        found = {part: stack_values.stack_outputs(cfn, f"flow-{part}{env['suffix']}") for part in standins}
        return {part: o for part, o in found.items() if o is not None}

    def values_files(outputs: dict[str, dict[str, str]], images: dict[str, str]) -> list[Path]:
        """The chart's values, in the order helm merges them (later wins)."""
        folder = evidence / "values"
        write_json(folder / "stacks.json", stack_values.chart_values(outputs, env["region"]))
        write_json(folder / "environment.json", env["helm"])
        write_json(folder / "images.json", {s: {"image": {"digest": images[s].split("@")[1]}} for s in SERVICES})
        shutil.copy(ROOT / env["chartValues"], folder / Path(env["chartValues"]).name)
        return [ROOT / env["chartValues"], folder / "stacks.json", folder / "environment.json", folder / "images.json"]

    # Parameters and values are checked before anything changes, with stand-ins for stacks not made yet.
    outputs = current_outputs()
    facts = template_facts()
    declared = {stack: f["Parameters"] for stack, f in facts.items()}
    problems = [p for stack in env["stacks"]
                for p in check_parameters(stack, declared[stack], parameters_for(stack, env, declared[stack], standins | outputs))]
    if problems:
        raise Refused("stack parameters: " + "; ".join(problems))
    say(f"  stack parameters of {', '.join(env['stacks'])}: valid for their templates")
    if args.stacks_only:  # the first deploy of an environment: its registry must exist before images are pushed
        images = {s: f"{r}@{PLACEHOLDER_DIGEST}" for s, r in check_images(None, standins["registry"], True).items()}
    else:
        images = check_images(args.images, (outputs.get("registry") or standins["registry"]), plan)
    write_json(evidence / "images.json", images)
    if plan or args.stacks_only:
        say(f"  images: PLACEHOLDER digest {PLACEHOLDER_DIGEST[:15]}... (no image is built by a plan)")
    else:
        ecr = session.client("ecr")
        for svc, ref in images.items():  # the digest must be in this environment's registry
            repository = ref.split("@")[0].split("/", 1)[1]
            try:
                ecr.describe_images(repositoryName=repository, imageIds=[{"imageDigest": ref.split("@")[1]}])
            except ClientError as error:
                raise Refused(f"{svc}: {ref} is not in the registry: {error}") from None
        say("  images: " + ", ".join(f"{s} {r.split('@')[1][:19]}" for s, r in images.items()))
    manifests = render(env, values_files(standins | outputs, images), evidence)
    say("  helm lint --strict, helm template and validation of every object: passed")

    say("stacks" + (" (change sets against LocalStack, never executed)" if plan else ""))
    summary["stacks"] = []
    done_params: dict[str, dict] = {}
    for n, stack in enumerate(ORDER):
        params = parameters_for(stack, env, declared[stack], outputs)
        if done_params.get(stack) == params:
            continue  # the second messaging pass changes nothing when the roles were there the first time
        change_set = make_change_set(cfn, stack, f"flow-{stack}{env['suffix']}", params, evidence.name)
        done_params[stack] = params
        conditions = condition_values(facts[stack], params)
        skipped = {r: c for r, c in facts[stack]["ResourceConditions"].items() if conditions.get(c) is False}
        change_set["SkippedByCondition"] = skipped
        write_json(evidence / "changesets" / f"{n}-{stack}.json", change_set)
        show_change_set(change_set, skipped if plan else {})
        summary["stacks"].append({"stack": change_set["StackName"], "type": change_set["Type"], "changes": len(change_set["Changes"])})
        if plan:
            discard_change_set(cfn, change_set)
        elif change_set["Changes"]:
            execute_change_set(cfn, change_set)
            outputs = current_outputs()
        else:
            cfn.delete_change_set(ChangeSetName=change_set["Id"])

    if args.stacks_only:
        summary["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        return summary
    say("helm")
    if not plan:  # again with the outputs of the stacks as they now are (a plan's stand-ins have not moved)
        manifests = render(env, values_files(outputs, images), evidence)
    if plan:
        previous, label = previous_plan(evidence.parent, evidence)
    else:
        live = subprocess.run([str(HELM), "get", "manifest", env["release"], "-n", env["namespace"]], capture_output=True, text=True)
        previous, label = (live.stdout if live.returncode == 0 else None), f"release {env['release']} as deployed"
    summary["diff"] = diff_manifests(previous, label, manifests, evidence)
    say(f"  manifests: {summary['diff']} (manifests.diff)")
    if not plan:
        first = subprocess.run([str(HELM), "status", env["release"], "-n", env["namespace"]], capture_output=True).returncode != 0
        if first and not args.bootstrap:
            raise Refused(f"no release {env['release']} in {env['namespace']} yet: the first install is made once with "
                          "--bootstrap, then tools.app_role (README, 'From a change to production')")
        wait = [] if args.bootstrap else ["--atomic", "--wait", "--timeout", "15m"]  # the first install has no flow_app yet
        files = values_files(outputs, images)
        say(run([HELM, "upgrade", "--install", env["release"], CHART, "--namespace", env["namespace"], "--create-namespace",
                 *wait, *sum((["-f", v] for v in files), [])]).strip())
        status = json.loads(run([HELM, "status", env["release"], "-n", env["namespace"], "-o", "json"]))
        write_json(evidence / "helm-status.json", status)
        summary["helm"] = {"revision": status.get("version"), "status": status.get("info", {}).get("status")}
        say(f"  release {env['release']} revision {summary['helm']['revision']}: {summary['helm']['status']}")
    summary["images"] = images
    summary["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return summary


def start_localstack():
    """A throwaway LocalStack for --plan (nothing of a running `make run` is touched)."""
    from tools.devstack.localstack import LocalStack
    from tools.devstack.processes import free_port
    localstack = LocalStack(STATE / "localstack-venv", Path(tempfile.mkdtemp(prefix="flow-plan-")), free_port())
    localstack.start()
    return localstack


def main(argv: list[str] | None = None) -> int:
    global _log
    parser = argparse.ArgumentParser(prog="tools/deploy", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    parser.add_argument("environment", choices=ENVIRONMENTS)
    parser.add_argument("--plan", action="store_true", help="no AWS, no cluster: change sets against LocalStack, helm template, the diff")
    parser.add_argument("--images", type=Path, help="JSON: service -> <repository>@sha256:... (python -m tools.push_images writes it)")
    parser.add_argument("--gate", type=Path, action="append", default=[], help="a folder of the stage before's JUnit XML (repeatable)")
    parser.add_argument("--aws-endpoint", help="--plan: a running LocalStack to use instead of a throwaway one")
    parser.add_argument("--stacks-only", action="store_true", help="checks and stacks, no images nor helm (an environment's first deploy)")
    parser.add_argument("--bootstrap", action="store_true", help="the first install of an environment: no --atomic/--wait (no flow_app yet)")
    args = parser.parse_args(argv)

    run_id = os.environ.get("FLOW_RUN_ID") or datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    evidence = STATE / "evidence" / args.environment / run_id
    evidence.mkdir(parents=True, exist_ok=True)
    localstack = None
    started = time.monotonic()
    with open(evidence / "output.txt", "w") as _log:
        try:
            if args.plan and not args.aws_endpoint:
                localstack = start_localstack()
                args.aws_endpoint = localstack.endpoint
            summary = deploy(args, evidence)
            summary["seconds"] = round(time.monotonic() - started, 1)
            write_json(evidence / "summary.json", summary)
            result = 0
            say(f"{summary['mode']} {args.environment}: done in {summary['seconds']} s; evidence in {evidence.relative_to(ROOT)}")
        except Refused as refusal:
            write_json(evidence / "summary.json", {"environment": args.environment, "refused": str(refusal)})
            say(f"REFUSED: {refusal}")
            result = 1
        finally:
            if localstack:  # a throwaway: its state goes with it
                localstack.stop()
                shutil.rmtree(localstack.state_dir, ignore_errors=True)
            _log = None
    if result == 0:
        latest = evidence.parent / "latest"
        latest.unlink(missing_ok=True)
        latest.symlink_to(evidence.name)
    prune(evidence.parent)
    return result


def prune(env_dir: Path, keep: int = 10) -> None:
    """Plans and refused runs are kept for the newest `keep` only; a deploy's evidence is never removed here."""
    def disposable(run: Path) -> bool:
        summary = run / "summary.json"
        if not summary.exists():
            return False
        found = json.loads(summary.read_text())
        return found.get("mode") == "plan" or "refused" in found
    runs = sorted((p for p in env_dir.iterdir() if p.is_dir() and not p.is_symlink() and disposable(p)),
                  key=lambda p: (p / "summary.json").stat().st_mtime)
    for run in runs[:-keep]:
        shutil.rmtree(run)


if __name__ == "__main__":
    sys.exit(main())
