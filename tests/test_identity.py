"""Who may do what on AWS: infra/cloudformation/identity.yaml's per-workload roles, as deployed (into
LocalStack, with stand-in ARNs), against every AWS call in the services' code; and the chart's
ServiceAccounts carrying those roles, one per workload.

The code is scanned with ast: every method call or string naming an operation of an SNS, SQS, Secrets
Manager or S3 client (botocore's service models list them), e.g. `self._sqs.receive_message(...)` or
`self._entries("delete_message_batch", ...)`, in the modules each workload runs (its package and what it
imports). Each is mapped to its IAM action and must be allowed on its resource by the workload's role; and
a role may allow nothing its workload does not call.
"""

import ast
import fnmatch
import json
import re
import urllib.parse
from collections import defaultdict
from functools import cache
from pathlib import Path

import boto3
import botocore.session
import pytest
from botocore import xform_name

from tests.test_chart import by_kind, chart_tools, pod_specs, rendered  # noqa: F401  (chart_tools: helm)
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parent.parent
SERVICES = ROOT / "services"
TEMPLATE = ROOT / "infra" / "cloudformation" / "identity.yaml"
AWS_SERVICES = ("sns", "sqs", "secretsmanager", "s3")
# What each workload runs: its entry module, and for the services their whole package too.
ENTRIES = {"ingest": ("flow_ingest.__main__", "flow_ingest"), "engine": ("flow_engine.__main__", "flow_engine"),
           "query": ("flow_query.__main__", "flow_query"), "reconcile": ("flow_engine.reconcile", None),
           "migrate": ("flow_kit.migrations", None), "archive": ("flow_archive.__main__", "flow_archive")}
# Operations IAM authorises under another action's name (the batch forms are their single forms).
IAM_ACTION = {"sqs:DeleteMessageBatch": "sqs:DeleteMessage", "sqs:SendMessageBatch": "sqs:SendMessage",
              "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility", "sns:PublishBatch": "sns:Publish",
              "s3:ListObjectsV2": "s3:ListBucket", "s3:ListObjects": "s3:ListBucket", "s3:HeadObject": "s3:GetObject",
              "s3:HeadBucket": "s3:ListBucket", "s3:CreateMultipartUpload": "s3:PutObject",
              "s3:UploadPart": "s3:PutObject", "s3:CompleteMultipartUpload": "s3:PutObject"}
# boto3's S3 transfer helpers are methods of the client but no operations of the model.
S3_HELPERS = {"upload_file": "s3:PutObject", "upload_fileobj": "s3:PutObject",
              "download_file": "s3:GetObject", "download_fileobj": "s3:GetObject"}
# Stand-in ARNs the template is deployed with (LocalStack's account), one per resource parameter.
ARN = "arn:aws:{}:us-east-1:000000000000:{}"
PARAMETERS = {
    "OidcProviderArn": "arn:aws:iam::000000000000:oidc-provider/oidc.eks.us-east-1.amazonaws.com/id/F10W",
    "OidcIssuer": "oidc.eks.us-east-1.amazonaws.com/id/F10W", "Namespace": "ledger",
    "KedaOperatorRoleArn": "arn:aws:iam::000000000000:role/keda-operator",
    "RequestTopicArn": ARN.format("sns", "FlowRequest"), "CallbackTopicArn": ARN.format("sns", "FlowCallback"),
    "QueueArn": ARN.format("sqs", "FlowTransaction"), "DlqArn": ARN.format("sqs", "FlowTransactionDlq"),
    "MessagingKeyArn": ARN.format("kms", "key/0f10a000-0000-4000-8000-000000000001"),
    "AppSecretArn": ARN.format("secretsmanager", "secret:flow/database-AbCdEf"),
    "ReplicaSecretArn": ARN.format("secretsmanager", "secret:flow/database-replica-GhIjKl"),
    "DataKeyArn": ARN.format("kms", "key/0f10a000-0000-4000-8000-000000000002"),
    "ArchiveBucketArn": "arn:aws:s3:::flow-archive", "ArchivePrefix": "ledger/",
    "ArchiveKeyArn": ARN.format("kms", "key/0f10a000-0000-4000-8000-000000000003"),
}
# Resources that are not parameters themselves: the archive's objects, under its prefix.
RESOURCES = {**PARAMETERS,
             "ArchiveObjects": f"{PARAMETERS['ArchiveBucketArn']}/{PARAMETERS['ArchivePrefix']}*"}
# Which resource (parameter) each workload's action is meant for. A call this table does not know
# fails the test: say here what it is for, and grant it in identity.yaml.
WHERE = {
    ("ingest", "sns:Publish"): {"RequestTopicArn"},
    ("ingest", "sns:GetTopicAttributes"): {"RequestTopicArn"},  # readiness
    ("ingest", "secretsmanager:GetSecretValue"): {"AppSecretArn"},
    ("engine", "sqs:ReceiveMessage"): {"QueueArn"},
    ("engine", "sqs:DeleteMessage"): {"QueueArn"},
    ("engine", "sqs:ChangeMessageVisibility"): {"QueueArn"},
    ("engine", "sqs:SendMessage"): {"QueueArn"},  # held postings, sent again (consumer.py, _hold)
    ("engine", "sqs:GetQueueAttributes"): {"QueueArn", "DlqArn"},  # readiness, queue depths
    ("engine", "sqs:GetQueueUrl"): {"DlqArn"},  # the dead-letter queue's URL from the redrive policy
    ("engine", "sns:Publish"): {"CallbackTopicArn"},
    ("engine", "sns:GetTopicAttributes"): {"CallbackTopicArn"},  # readiness
    ("engine", "secretsmanager:GetSecretValue"): {"AppSecretArn"},
    ("query", "secretsmanager:GetSecretValue"): {"ReplicaSecretArn"},
    ("query", "s3:GetObject"): {"ArchiveObjects"},  # archived months' files (flow_query.archive)
    ("archive", "s3:PutObject"): {"ArchiveObjects"},
    ("archive", "s3:GetObject"): {"ArchiveObjects"},  # read back before a drop; restores
    ("archive", "s3:ListBucket"): {"ArchiveBucketArn"},  # is the manifest there yet
    ("archive", "secretsmanager:GetSecretValue"): {"AppSecretArn"},
}
# Reached by the module-level scan but never called: the reconciliation imports flow_kit.db for
# create_engine (FLOW_DATABASE_URL), not create_database, which reads the secret (checked below).
NEVER_CALLED = {("reconcile", "secretsmanager:GetSecretValue")}
ROLE_OUTPUTS = {"ingest": "IngestRoleArn", "engine": "EngineRoleArn", "query": "QueryRoleArn",
                "reconcile": "ReconcileRoleArn", "archive": "ArchiveRoleArn"}


# --- the code's AWS calls ---------------------------------------------------------------------------

@cache
def operations() -> dict[str, set[str]]:
    """snake_case client method -> the actions ("sqs:ReceiveMessage") of the services' operations so named."""
    session = botocore.session.get_session()
    found = defaultdict(set)
    for service in AWS_SERVICES:  # their IAM prefixes are their botocore names
        for name in session.get_service_model(service).operation_names:
            found[xform_name(name)].add(f"{service}:{name}")
    for method, action in S3_HELPERS.items():
        found[method].add(action)
    return found


def _client_call(call: ast.Call) -> bool:
    """boto3 client methods take keyword arguments only: a positional one (`publisher.publish(flat)`),
    or none at all where the operation needs some (pydantic's `key.get_secret_value()`), is another method."""
    if call.args:
        return False
    if call.keywords or call.func.attr in S3_HELPERS:
        return True
    session = botocore.session.get_session()
    for action in operations()[call.func.attr]:
        service, name = action.split(":")
        shape = session.get_service_model(service).operation_model(name).input_shape
        if shape is not None and shape.required_members:
            return False
    return True


def aws_calls(source: str, where: str = "") -> dict[str, set[str]]:
    """IAM action -> "where:line" of each call in `source` that invokes it, by method or by name."""
    found = defaultdict(set)
    for node in ast.walk(ast.parse(source)):
        names = ()
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in operations():
            names = operations()[node.func.attr] if _client_call(node) else ()
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in operations():
            names = operations()[node.value]  # getattr(client, "delete_message_batch") and the like
        if len(names) > 1:
            raise AssertionError(f"{where}:{node.lineno}: {sorted(names)} share a method name; tell them apart here")
        for name in names:
            found[IAM_ACTION.get(name, name)].add(f"{where}:{node.lineno}")
    return found


@cache
def modules() -> dict[str, Path]:
    """Every FLOW module by dotted name (flow_kit.db, flow_engine.consumer, ...)."""
    found = {}
    for path in SERVICES.glob("*/flow_*/**/*.py"):
        parts = path.relative_to(SERVICES / path.relative_to(SERVICES).parts[0]).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imported(name: str) -> set[str]:
    """FLOW modules `name` imports (anywhere in it, lazily inside functions too)."""
    path = modules()[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        for target in targets:
            parts = target.split(".")
            found |= {".".join(parts[:n]) for n in range(1, len(parts) + 1)} & modules().keys()
    return found


def workload_modules(workload: str) -> set[str]:
    entry, package = ENTRIES[workload]
    todo = [entry] + [m for m in modules() if package and (m == package or m.startswith(package + "."))]
    seen = set()
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo += imported(name)
    return seen


def workload_calls(workload: str, extra_source: str = "") -> dict[str, set[str]]:
    """IAM action -> where, of every AWS call the workload's modules make (and of `extra_source`)."""
    found = defaultdict(set)
    for name in sorted(workload_modules(workload)):
        path = modules()[name]
        for action, places in aws_calls(path.read_text(), str(path.relative_to(ROOT))).items():
            found[action] |= places
    for action, places in aws_calls(extra_source, "synthetic").items():
        found[action] |= places
    for never, action in NEVER_CALLED:
        if never == workload:
            found.pop(action, None)
    return found


# --- what a deployed role allows --------------------------------------------------------------------

def _list(value) -> list:
    return value if isinstance(value, list) else [value]


def _document(value) -> dict:
    """A policy document as IAM returns it: a dict, or (URL-encoded) JSON text."""
    return value if isinstance(value, dict) else json.loads(urllib.parse.unquote(value))


def allows(statements: list[dict], action: str, resource: str) -> bool:
    """Whether the statements allow `action` on `resource` (conditions aside: these grants have none)."""
    def matches(statement) -> bool:
        return any(fnmatch.fnmatch(action.lower(), a.lower()) for a in _list(statement.get("Action", []))) and \
            any(fnmatch.fnmatch(resource, r) for r in _list(statement.get("Resource", [])))
    return any(matches(s) for s in statements if s["Effect"] == "Allow") and \
        not any(matches(s) for s in statements if s["Effect"] == "Deny")


def problems(workload: str, calls: dict[str, set[str]], statements: list[dict]) -> list[str]:
    """What the role lacks for the calls, and what it allows beyond them."""
    found = []
    for action, places in sorted(calls.items()):
        resources = WHERE.get((workload, action))
        if resources is None:
            found.append(f"{workload} calls {action} ({', '.join(sorted(places))}): say on what in WHERE, grant it in identity.yaml")
            continue
        found += [f"{workload}'s role does not allow {action} on {param} ({', '.join(sorted(places))})"
                  for param in sorted(resources) if not allows(statements, action, RESOURCES[param])]
    for statement in (s for s in statements if s["Effect"] == "Allow"):
        for action in (a for a in _list(statement["Action"]) if not a.startswith("kms:")):  # kms: see below
            meant = {RESOURCES[param] for param in WHERE.get((workload, action), ())}
            if action not in calls:
                found.append(f"{workload}'s role allows {action}, which its code never calls")
            found += [f"{workload}'s role allows {action} on {resource}, beyond what it is for"
                      for resource in _list(statement["Resource"]) if action in calls and resource not in meant]
    return found


def deploy(endpoint: str, name: str, template: str, parameters: dict[str, str]) -> dict:
    """Creates a stack of `template` in LocalStack; per workload its role's ARN, trust policy statements and
    policy statements."""
    client = lambda service: boto3.client(service, endpoint_url=endpoint, region_name="us-east-1",  # noqa: E731
                                          aws_access_key_id="test", aws_secret_access_key="test")
    cfn, iam = client("cloudformation"), client("iam")
    cfn.create_stack(StackName=name, TemplateBody=template, Capabilities=["CAPABILITY_IAM"],
                     Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()])
    status = wait_until(lambda: cfn.describe_stacks(StackName=name)["Stacks"][0], f"{name} to be created", 60,
                        holds=lambda stack: not stack["StackStatus"].endswith("IN_PROGRESS"),
                        describe=lambda stack: stack["StackStatus"])
    assert status["StackStatus"] == "CREATE_COMPLETE", [
        (e["LogicalResourceId"], e.get("ResourceStatusReason"))
        for e in cfn.describe_stack_events(StackName=name)["StackEvents"] if "FAILED" in e["ResourceStatus"]]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in status["Outputs"]}
    roles = {}
    for workload, output in ROLE_OUTPUTS.items():
        role_name = outputs[output].rsplit("/", 1)[1]
        role = iam.get_role(RoleName=role_name)["Role"]
        statements = []
        for policy in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
            statements += _document(iam.get_role_policy(RoleName=role_name, PolicyName=policy)["PolicyDocument"])["Statement"]
        roles[workload] = {"arn": role["Arn"], "trust": _document(role["AssumeRolePolicyDocument"])["Statement"],
                           "statements": statements}
    return roles  # the stack stays: the test LocalStack goes at the session's end


@pytest.fixture(scope="module")
def identity(stack) -> dict:
    """identity.yaml deployed into the test stack's LocalStack with the stand-in ARNs: the roles."""
    return deploy(stack.aws_endpoint, "flow-identity-test", TEMPLATE.read_text(), PARAMETERS)


# --- the tests --------------------------------------------------------------------------------------

def test_the_scan_finds_the_calls_it_must():
    """The scan sees calls by method and by name, maps batches to their actions, and leaves alone
    methods that merely share a name (pydantic's SecretStr.get_secret_value, a publisher's publish)."""
    engine = workload_calls("engine")
    assert {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:SendMessage",
            "sqs:GetQueueAttributes", "sqs:GetQueueUrl", "sns:Publish"} <= engine.keys()
    assert any("consumer.py" in place for place in engine["sqs:DeleteMessage"])  # self._entries("delete_message_batch", ...)
    assert workload_calls("ingest").keys() == {"sns:Publish", "sns:GetTopicAttributes", "secretsmanager:GetSecretValue"}
    assert workload_calls("query").keys() == {"secretsmanager:GetSecretValue", "s3:GetObject"}  # key.get_secret_value(): no call
    assert workload_calls("archive").keys() == {"s3:PutObject", "s3:GetObject", "s3:ListBucket",
                                                "secretsmanager:GetSecretValue"}
    assert "flow_archive.job" not in workload_modules("engine")  # the engine's role writes no archive
    assert not workload_calls("reconcile") and not workload_calls("migrate")  # PostgreSQL only
    reconcile = modules()["flow_engine.reconcile"].read_text()
    assert "create_engine(" in reconcile and not re.search(r"\b(create_database|DatabaseCredentials|AwsClients)\b", reconcile)
    synthetic = aws_calls('async def f(c, key, p):\n    await c.purge_queue(QueueUrl="u")\n    getattr(c, "put_object")\n'
                          '    await c.upload_file(Filename="f", Bucket="b", Key="k")\n    key.get_secret_value()\n    p.publish(1)\n')
    assert synthetic.keys() == {"sqs:PurgeQueue", "s3:PutObject"}


def test_every_aws_call_in_services_belongs_to_a_workload():
    """No AWS call hides in a module none of the workloads is found to run."""
    reached = set().union(*(workload_modules(w) for w in ENTRIES))
    orphans = {name for name, path in modules().items() if name not in reached and aws_calls(path.read_text(), name)}
    assert not orphans


def test_each_role_allows_exactly_what_its_code_calls_on_the_right_resource(identity, monkeypatch):
    for workload in ("ingest", "engine", "query", "reconcile", "archive"):
        assert not problems(workload, workload_calls(workload), identity[workload]["statements"])
    # One more call in the code, and the same deployed roles fail the check.
    more = workload_calls("query", 'async def f(self):\n    await self._sns.publish(TopicArn="t", Message="m")\n')
    query = identity["query"]["statements"]
    assert problems("query", more, query) == [
        "query calls sns:Publish (synthetic:2): say on what in WHERE, grant it in identity.yaml"]
    monkeypatch.setitem(WHERE, ("query", "sns:Publish"), {"CallbackTopicArn"})
    assert problems("query", more, query) == [
        "query's role does not allow sns:Publish on CallbackTopicArn (synthetic:2)"]


def test_a_new_call_without_its_permission_fails():
    """The check above can fail: a call the role lacks, one on no known resource, a grant no call uses,
    a grant on more than the call is for."""
    engine = {"sqs:ReceiveMessage": {"x"}}
    exact = [{"Effect": "Allow", "Action": "sqs:ReceiveMessage", "Resource": PARAMETERS["QueueArn"]}]
    assert problems("engine", engine, exact) == []
    granted = [{**exact[0], "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage"]}]
    extra = workload_calls("engine", 'async def f(self):\n    await self._sqs.send_message_batch(QueueUrl="u", Entries=[])\n'
                                     '    await self._sqs.purge_queue(QueueUrl="u")\n')
    assert "synthetic:3" in extra["sqs:PurgeQueue"] and "synthetic:2" in extra["sqs:SendMessage"]
    found = problems("engine", extra, [{"Effect": "Allow", "Action": "sqs:ReceiveMessage", "Resource": PARAMETERS["DlqArn"]}])
    assert any("engine calls sqs:PurgeQueue (synthetic:3)" in p for p in found)
    assert any("does not allow sqs:ReceiveMessage on QueueArn" in p for p in found)  # on the DLQ only
    assert any("does not allow sqs:SendMessage on QueueArn" in p and "synthetic:2" in p for p in found)
    assert problems("engine", engine, granted) == ["engine's role allows sqs:DeleteMessage, which its code never calls"]
    anywhere = [{**exact[0], "Resource": "*"}]
    assert problems("engine", engine, anywhere) == ["engine's role allows sqs:ReceiveMessage on *, beyond what it is for"]


def test_roles_trust_only_their_own_service_account(identity):
    """IRSA: the cluster's OIDC provider, for the audience sts.amazonaws.com and the workload's own
    ServiceAccount, named as the chart names them; KEDA's operator may assume the engine's role alone."""
    chart_accounts = {d["metadata"]["labels"]["app.kubernetes.io/component"]: name
                      for name, d in by_kind(rendered("default-values.yaml"), "ServiceAccount").items()}
    assert set(chart_accounts) == {"ingest", "engine", "query", "reconcile"}
    issuer = PARAMETERS["OidcIssuer"]
    for workload, role in identity.items():
        account = chart_accounts.get(workload, f"flow-{workload}")
        irsa, *others = role["trust"]
        assert irsa == {"Sid": "Irsa", "Effect": "Allow", "Principal": {"Federated": PARAMETERS["OidcProviderArn"]},
                        "Action": "sts:AssumeRoleWithWebIdentity",
                        "Condition": {"StringEquals": {f"{issuer}:sub": f"system:serviceaccount:ledger:{account}",
                                                       f"{issuer}:aud": "sts.amazonaws.com"}}}, workload
        keda = [{"Sid": "KedaReadsTheQueueDepth", "Effect": "Allow",
                 "Principal": {"AWS": PARAMETERS["KedaOperatorRoleArn"]}, "Action": "sts:AssumeRole"}]
        assert others == (keda if workload == "engine" else []), workload  # no Pod Identity: not asked for
    assert not identity["reconcile"]["statements"]  # PostgreSQL only


def test_pod_identity_adds_a_trust_narrowed_to_the_cluster_namespace_and_account(stack):
    """With PodIdentityClusterName, each role also trusts EKS Pod Identity for its own ServiceAccount
    only. LocalStack has no EKS: the pod identity associations are left out of this deployment. (Without
    ReplicaSecretArn here: query then reads the services' secret, as tools/stack_values.py sets it.)"""
    text = TEMPLATE.read_text()
    without_associations = text[:text.index("  # EKS Pod Identity: each")] + text[text.index("\nOutputs:"):]
    roles = deploy(stack.aws_endpoint, "flow-identity-pod-identity", without_associations,
                   {**PARAMETERS, "PodIdentityClusterName": "flow-prod", "ReplicaSecretArn": ""})
    query = roles["query"]["statements"]
    assert allows(query, "secretsmanager:GetSecretValue", PARAMETERS["AppSecretArn"])
    assert not allows(query, "secretsmanager:GetSecretValue", PARAMETERS["ReplicaSecretArn"])
    for workload, role in roles.items():
        [pod_identity] = [s for s in role["trust"] if s["Sid"] == "PodIdentity"]
        assert pod_identity == {
            "Sid": "PodIdentity", "Effect": "Allow", "Principal": {"Service": "pods.eks.amazonaws.com"},
            "Action": ["sts:AssumeRole", "sts:TagSession"],
            "Condition": {"StringEquals": {"aws:SourceAccount": "000000000000", "aws:RequestTag/eks-cluster-name": "flow-prod",
                                           "aws:RequestTag/kubernetes-namespace": "ledger",
                                           "aws:RequestTag/kubernetes-service-account": f"flow-{workload}"}}}, workload
        assert role["trust"][0]["Sid"] == "Irsa"  # IRSA stays


def test_the_archive_role_is_limited_to_its_prefix_and_key(identity):
    statements = identity["archive"]["statements"]
    bucket, prefix = PARAMETERS["ArchiveBucketArn"], PARAMETERS["ArchivePrefix"]
    assert allows(statements, "s3:PutObject", f"{bucket}/{prefix}2026/11/30.jsonl.gz")
    assert allows(statements, "s3:GetObject", f"{bucket}/{prefix}x")
    assert not allows(statements, "s3:PutObject", f"{bucket}/other/x")
    assert not allows(statements, "s3:DeleteObject", f"{bucket}/{prefix}x")
    [listing] = [s for s in statements if s["Action"] == "s3:ListBucket"]
    assert listing["Resource"] == bucket and listing["Condition"] == {"StringLike": {"s3:prefix": f"{prefix}*"}}
    [key] = [s for s in statements if s["Resource"] == PARAMETERS["ArchiveKeyArn"]]
    assert key["Condition"] == {"StringEquals": {"kms:ViaService": "s3.us-east-1.amazonaws.com"}}


def test_kms_keys_are_used_only_through_their_services(identity):
    for workload, role in identity.items():
        for statement in role["statements"]:
            if any(a.startswith("kms:") for a in _list(statement["Action"])):
                assert set(_list(statement["Action"])) <= {"kms:Decrypt", "kms:GenerateDataKey"}, workload
                assert statement["Resource"] in {PARAMETERS[k] for k in ("MessagingKeyArn", "DataKeyArn", "ArchiveKeyArn")}
                assert "kms:ViaService" in statement["Condition"]["StringEquals"], workload
    assert not [s for s in identity["query"]["statements"] if s["Resource"] == PARAMETERS["MessagingKeyArn"]]


def test_the_chart_gives_each_workload_its_own_service_account_and_role():
    docs = rendered("default-values.yaml")
    accounts = by_kind(docs, "ServiceAccount")
    roles = {name: a["metadata"]["annotations"]["eks.amazonaws.com/role-arn"] for name, a in accounts.items()}
    assert roles == {f"flow-{w}": f"arn:aws:iam::123456789012:role/flow-{w}" for w in ("ingest", "engine", "query", "reconcile")}
    assert all(a["automountServiceAccountToken"] is False for a in accounts.values())
    used = {name: spec.get("serviceAccountName") for name, spec in pod_specs(docs)}
    assert used == {"flow-ingest": "flow-ingest", "flow-engine": "flow-engine", "flow-query": "flow-query",
                    "flow-reconcile": "flow-reconcile", "flow-migrate": None}  # migrations: no AWS, no role
    # KEDA reads the queue as the engine: the TriggerAuthentication takes the engine pods' identity.
    keda = rendered("keda-values.yaml")
    [auth] = by_kind(keda, "TriggerAuthentication").values()
    assert auth["spec"]["podIdentity"] == {"provider": "aws", "identityOwner": "workload"}
    [scaled] = by_kind(keda, "ScaledObject").values()
    engine = by_kind(keda, "Deployment")[scaled["spec"]["scaleTargetRef"]["name"]]["spec"]["template"]["spec"]
    assert by_kind(keda, "ServiceAccount")[engine["serviceAccountName"]]["metadata"]["annotations"] == {
        "eks.amazonaws.com/role-arn": "arn:aws:iam::123456789012:role/flow-engine"}


def test_existing_service_accounts_and_no_roles():
    existing = rendered("minimal-values.yaml", "--set", "query.serviceAccount.create=false,query.serviceAccount.name=shared-reader,"
                                                        "ingest.serviceAccount.name=poster")
    assert set(by_kind(existing, "ServiceAccount")) == {"poster", "flow-engine"}  # reconcile is off there
    used = {name: spec.get("serviceAccountName") for name, spec in pod_specs(existing)}
    assert (used["flow-query"], used["flow-ingest"]) == ("shared-reader", "poster")
    # Without a role (LocalStack, the nodes' role) the accounts carry no IRSA annotation.
    assert not [a for a in by_kind(existing, "ServiceAccount").values() if a["metadata"].get("annotations")]
