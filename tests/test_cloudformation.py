"""FLOW's CloudFormation stacks (infra/cloudformation/*.yaml, every template there):

- static checks of each: cfn-lint, cfn-guard with the AWS Control Tower rule packs, checkov; each must be
  clean, or the finding suppressed in the template next to the resource with a reason (cfn-lint
  Metadata cfn-lint ignore_checks, checkov Metadata checkov skip with a comment, guard Metadata guard
  SuppressedRules, which the Control Tower rules do not read themselves: applied here, and a
  suppression no finding needs fails); and proof that each checker does flag a bad template;
- deployed into the test stack's LocalStack where LocalStack has the resources (messaging: KMS, SNS,
  SQS, CloudWatch alarms; archive: KMS, S3) and checked through the AWS APIs, SNS really delivering
  into the encrypted queue. LocalStack 4.4.0 has no RDS (data.yaml), only a mock of ECR that creates
  nothing (registry.yaml), and its S3 resource ignores BucketEncryption, LifecycleConfiguration,
  PublicAccessBlockConfiguration and OwnershipControls: those are checked in the templates;
- the outputs made into chart values by tools/stack_values.py, rendered by `helm template` (the
  chart's schema) and checked by kubernetes-validate; tools/app_role.py creating flow_app.

The tools come from tools/chart-tools.sh (into .state/)."""

import json
import re
import subprocess
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import asyncpg
import boto3
import pytest

from tests.test_chart import AUTH_SET, CHART, HELM, KUBE, VENV, assert_valid_kubernetes, by_kind, parse_yaml, run
from tests.waiting import wait_until
from tools import stack_values
from tools.app_role import create_app_role
from tools.devstack.messaging import deploy_messaging

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = ROOT / "infra" / "cloudformation"
TEMPLATES = sorted(p.name for p in TEMPLATES_DIR.glob("*.yaml"))
GUARD = ROOT / ".state" / "cfn-guard"
CHECKOV = ROOT / ".state" / "policy-venv" / "bin" / "checkov"
LOCAL = {"region_name": "us-east-1", "aws_access_key_id": "test", "aws_secret_access_key": "test"}

# A template every checker must refuse: an unencrypted queue without a dead-letter queue, a bucket
# without encryption or versioning, and a property CloudFormation does not know.
BAD_TEMPLATE = """AWSTemplateFormatVersion: "2010-09-09"
Resources:
  Queue:
    Type: AWS::SQS::Queue
    Properties:
      SqsManagedSseEnabled: false
      NoSuchProperty: 1
  Bucket:
    Type: AWS::S3::Bucket
"""


@pytest.fixture(scope="module", autouse=True)
def tools() -> None:
    done = run("bash", ROOT / "tools" / "chart-tools.sh")
    assert done.returncode == 0, done.stdout + done.stderr


# CloudFormation's YAML: short-form tags (!Ref x, !GetAtt a.b, !Sub ...) read as their Fn:: objects.
DECODE = r"""
import json, sys, yaml
def tag(loader, suffix, node):
    value = (loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else
             loader.construct_sequence(node, deep=True) if isinstance(node, yaml.SequenceNode) else
             loader.construct_mapping(node, deep=True))
    if suffix == "Ref":
        return {"Ref": value}
    if suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {"Fn::" + suffix: value}
yaml.SafeLoader.add_multi_constructor("!", tag)
print(json.dumps({path: yaml.safe_load(open(path)) for path in sys.argv[1:]}))
"""


@cache
def templates() -> dict[str, dict]:
    """Every template by file name, parsed at once (in the tools' venv: the app's has no PyYAML)."""
    done = run(VENV / "python", "-c", DECODE, *(TEMPLATES_DIR / n for n in TEMPLATES))
    assert done.returncode == 0, done.stderr
    return {Path(path).name: doc for path, doc in json.loads(done.stdout).items()}


def template(name: str) -> dict:
    return templates()[name]


@pytest.fixture(scope="module")
def bad_template(tmp_path_factory) -> Iterator[Path]:
    """bad.yaml in a folder beside links to the real templates: one checkov run reads them all."""
    folder = tmp_path_factory.mktemp("templates")
    for name in TEMPLATES:
        (folder / name).symlink_to(TEMPLATES_DIR / name)
    (folder / "bad.yaml").write_text(BAD_TEMPLATE)
    start_checkov(folder / "bad.yaml")
    yield folder / "bad.yaml"
    if _checkov[folder / "bad.yaml"].poll() is None:  # its report was never read (tests deselected)
        _checkov[folder / "bad.yaml"].kill()
        _checkov[folder / "bad.yaml"].communicate()


# --- static checks ---------------------------------------------------------------------------------

@cache
def cfn_lint(*paths: Path) -> dict[str, list[dict]]:
    """cfn-lint's findings per file name (one run: its start-up takes seconds)."""
    done = run(VENV / "cfn-lint", "--format", "json", *paths)
    assert done.returncode in (0, 2, 4, 6, 8, 10, 12, 14), done.stderr  # bit flags: errors, warnings, informational
    found = {Path(p).name: [] for p in paths}
    for match in json.loads(done.stdout or "[]"):
        found[Path(match["Filename"]).name].append(match)
    return found


def lint_all(bad: Path) -> dict[str, list[dict]]:
    return cfn_lint(*(TEMPLATES_DIR / n for n in TEMPLATES), bad)


def guard_findings(path: Path) -> set[tuple[str, str]]:
    """(rule, resource) pairs the Control Tower rules find in the template at `path`."""
    done = run(GUARD / "cfn-guard", "validate", "--rules", GUARD / "control-tower", "--data", path,
               "--structured", "--output-format", "json", "--show-summary", "none")
    assert done.returncode in (0, 19), done.stderr  # 19: some rule failed
    findings = set()
    for report in json.loads(done.stdout):
        for failure in report["not_compliant"]:
            rule = failure["Rule"]["name"]
            # Every path the failed checks looked at names its resource: /Resources/<name>/...
            findings |= {(rule, m) for m in re.findall(r'"/Resources/([^/"]+)', json.dumps(failure))}
    return findings


def guard_suppressions(doc: dict) -> set[tuple[str, str]]:
    return {(rule, name) for name, resource in doc.get("Resources", {}).items()
            for rule in resource.get("Metadata", {}).get("guard", {}).get("SuppressedRules", [])}


_checkov: dict[Path, subprocess.Popen] = {}


def start_checkov(bad: Path) -> None:
    """checkov over every template and the bad one, started in the background: it takes seconds, which
    cfn-lint and cfn-guard use meanwhile."""
    _checkov[bad] = subprocess.Popen(
        [str(CHECKOV), "--directory", str(bad.parent), "--framework", "cloudformation", "--skip-download", "--output", "json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)


@cache
def checkov_report(bad: Path) -> dict:
    """checkov's results per file name (outcome -> checks)."""
    out, err = _checkov[bad].communicate(timeout=120)
    assert _checkov[bad].returncode in (0, 1), err
    report = json.loads(out)
    report = report[0] if isinstance(report, list) else report
    assert report["summary"]["parsing_errors"] == 0
    results = {}
    for outcome, checks in report["results"].items():
        for check in checks:
            results.setdefault(Path(check["file_path"]).name, {}).setdefault(outcome, []).append(check)
    return results


@pytest.mark.parametrize("name", TEMPLATES)
def test_cfn_lint_passes(name, bad_template):
    assert lint_all(bad_template)[name] == []


@pytest.mark.parametrize("name", TEMPLATES)
def test_cfn_guard_control_tower_rules_pass(name):
    suppressed = guard_suppressions(template(name))
    found = guard_findings(TEMPLATES_DIR / name)
    assert found - suppressed == set()
    assert suppressed - found == set(), "a guard suppression no finding needs"


@pytest.mark.parametrize("name", TEMPLATES)
def test_checkov_passes(name, bad_template):
    results = checkov_report(bad_template)[name]
    assert [c["check_id"] for c in results.get("failed_checks", [])] == []
    assert results["passed_checks"]  # it was read
    for skip in results.get("skipped_checks", []):
        assert skip["check_result"].get("suppress_comment", "No comment provided") != "No comment provided", skip["check_id"]


def test_every_checker_flags_a_bad_template(bad_template):
    bad = bad_template
    assert "E3002" in {m["Rule"]["Id"] for m in lint_all(bad)[bad.name]}  # the unknown property
    assert {("sqs_queue_encrypted_check", "Queue"), ("sqs_dlq_check", "Queue"),
            ("s3_bucket_default_encryption_kms_check", "Bucket")} <= guard_findings(bad)
    failed = {c["check_id"] for c in checkov_report(bad)[bad.name]["failed_checks"]}
    assert {"CKV_AWS_27", "CKV_AWS_21"} <= failed  # SQS encryption, S3 versioning
    # A guard suppression hides its own rule on its own resource, nothing more.
    suppressed = {"Resources": {"Queue": {"Metadata": {"guard": {"SuppressedRules": ["sqs_dlq_check"]}}}}}
    left = guard_findings(bad) - guard_suppressions(suppressed)
    assert ("sqs_dlq_check", "Queue") not in left and ("sqs_queue_encrypted_check", "Queue") in left


def test_data_template_is_what_flow_needs():
    """data.yaml has no LocalStack counterpart: what FLOW relies on, read from the template."""
    resources = template("data.yaml")["Resources"]
    parameters = resources["DatabaseParameters"]["Properties"]
    assert parameters["Family"] == "postgres15"
    assert parameters["Parameters"] == {"rds.force_ssl": "1", "timezone": "UTC", "password_encryption": "scram-sha-256"}
    primary = resources["Primary"]["Properties"]
    assert primary["Engine"] == "postgres" and primary["StorageEncrypted"] is True
    assert primary["ManageMasterUserPassword"] is True and primary["PubliclyAccessible"] is False
    assert {primary[k]["Ref"] for k in ("MultiAZ", "BackupRetentionPeriod", "DeletionProtection")} == {
        "MultiAZ", "BackupRetentionDays", "DeletionProtection"}  # per environment
    replicas = {n: r for n, r in resources.items() if "SourceDBInstanceIdentifier" in r.get("Properties", {})}
    assert sorted(r["Condition"] for r in replicas.values()) == ["HasReplica1", "HasReplica2", "HasReplica3"]
    secret = resources["AppSecret"]["Properties"]
    assert json.loads(secret["GenerateSecretString"]["SecretStringTemplate"]["Fn::Sub"].replace("${AppUsername}", "u")
                      .replace("${DatabaseName}", "d")) == {"username": "u", "dbname": "d"}
    assert secret["GenerateSecretString"]["GenerateStringKey"] == "password"
    assert resources["AppSecretAttachment"]["Properties"]["TargetType"] == "AWS::RDS::DBInstance"  # host, port, engine
    rotation = resources["AppSecretRotation"]["Properties"]
    assert rotation["HostedRotationLambda"]["RotationType"] == "PostgreSQLSingleUser"
    assert rotation["RotateImmediatelyOnUpdate"] is False  # flow_app does not exist before tools.app_role
    # Nothing but the EKS nodes' group and the rotation function's may reach PostgreSQL.
    ingress = resources["DatabaseSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert [(i["FromPort"], i["SourceSecurityGroupId"]) for i in ingress] == [(5432, {"Ref": "ClientSecurityGroupId"})]
    outputs = template("data.yaml")["Outputs"]
    assert {"PrimaryEndpoint", "PrimaryPort", "ReadEndpoint", "ReadPort", "DatabaseName", "AppSecretArn",
            "MasterSecretArn", "DataKeyArn"} <= outputs.keys()


def test_registry_template_is_what_flow_needs():
    """ECR is only a mock in LocalStack's CloudFormation: the repositories are checked in the template."""
    resources = template("registry.yaml")["Resources"]
    repos = {r["Properties"]["RepositoryName"]["Fn::Sub"]: r["Properties"] for r in resources.values()
             if r["Type"] == "AWS::ECR::Repository"}
    assert sorted(repos) == ["flow-engine${NameSuffix}", "flow-ingest${NameSuffix}", "flow-query${NameSuffix}"]
    for repo in repos.values():
        assert repo["ImageTagMutability"] == "IMMUTABLE" and repo["ImageScanningConfiguration"] == {"ScanOnPush": True}
        assert repo["EncryptionConfiguration"]["EncryptionType"] == "KMS"
        [rule] = json.loads(repo["LifecyclePolicy"]["LifecyclePolicyText"])["rules"]
        assert rule["selection"]["tagStatus"] == "untagged" and rule["action"] == {"type": "expire"}


def test_archive_template_settings_localstack_ignores():
    bucket = template("archive.yaml")["Resources"]["ArchiveBucket"]["Properties"]
    [encryption] = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"
    assert set(bucket["PublicAccessBlockConfiguration"].values()) == {True}
    assert bucket["OwnershipControls"] == {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]}
    rules = bucket["LifecycleConfiguration"]["Rules"]
    assert not [r for r in rules if {"ExpirationInDays", "ExpirationDate", "NoncurrentVersionExpiration"} & r.keys()]
    allowed = template("archive.yaml")["Parameters"]["TransitionStorageClass"]["AllowedValues"]
    assert allowed == ["STANDARD_IA", "GLACIER_IR"]  # read directly: never GLACIER or DEEP_ARCHIVE


# --- deployed into LocalStack ----------------------------------------------------------------------

def aws(stack, service: str):
    return boto3.client(service, endpoint_url=stack.aws_endpoint, **LOCAL)


@pytest.fixture(scope="module")
def suffix() -> str:
    return f"-cfn{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="module")
def messaging(stack, suffix) -> dict[str, str]:
    # The alarm thresholds keep their defaults: LocalStack 4.4.0 hands a Number parameter given at
    # creation to PutMetricAlarm as a string, which it then refuses (AWS converts it).
    return deploy_messaging(stack.aws_endpoint, TEMPLATES_DIR / "messaging.yaml", {"NameSuffix": suffix},
                            stack_name=f"flow-messaging{suffix}")


@pytest.fixture(scope="module")
def archive(stack, suffix) -> dict[str, str]:
    return deploy_messaging(stack.aws_endpoint, TEMPLATES_DIR / "archive.yaml",
                            {"NameSuffix": suffix, "RetentionDays": "30"}, stack_name=f"flow-archive{suffix}")


def test_messaging_is_encrypted_with_its_key_and_dead_letters_undelivered_postings(stack, messaging):
    kms, sqs, sns = aws(stack, "kms"), aws(stack, "sqs"), aws(stack, "sns")
    key = kms.describe_key(KeyId=messaging["MessagingKeyArn"])["KeyMetadata"]
    assert key["KeyManager"] == "CUSTOMER" and kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"]
    policy = json.loads(kms.get_key_policy(KeyId=key["KeyId"], PolicyName="default")["Policy"])
    sns_use = next(s for s in policy["Statement"] if s.get("Principal") == {"Service": "sns.amazonaws.com"})
    assert {"kms:GenerateDataKey*", "kms:Decrypt"} <= set(sns_use["Action"])
    for url in (messaging["QueueUrl"], messaging["DlqUrl"], messaging["DeliveryDlqUrl"]):
        attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["KmsMasterKeyId"])["Attributes"]
        assert attributes["KmsMasterKeyId"] in (key["KeyId"], key["Arn"]), url
    for topic in (messaging["RequestTopicArn"], messaging["CallbackTopicArn"], messaging["AlarmTopicArn"]):
        assert sns.get_topic_attributes(TopicArn=topic)["Attributes"]["KmsMasterKeyId"] in (key["KeyId"], key["Arn"])
    [subscription] = sns.list_subscriptions_by_topic(TopicArn=messaging["RequestTopicArn"])["Subscriptions"]
    attributes = sns.get_subscription_attributes(SubscriptionArn=subscription["SubscriptionArn"])["Attributes"]
    assert attributes["RawMessageDelivery"] == "true"
    assert json.loads(attributes["RedrivePolicy"]) == {"deadLetterTargetArn": messaging["DeliveryDlqArn"]}


def test_alarms_watch_both_dead_letter_queues_and_the_oldest_posting(stack, messaging, suffix):
    alarms = {a["MetricName"] + ":" + a["Dimensions"][0]["Value"]: a
              for a in aws(stack, "cloudwatch").describe_alarms()["MetricAlarms"] if suffix in a["AlarmName"]}
    expected = {f"ApproximateNumberOfMessagesVisible:FlowTransactionDlq{suffix}": 0,
                f"ApproximateNumberOfMessagesVisible:FlowRequestDeliveryDlq{suffix}": 0,
                f"ApproximateAgeOfOldestMessage:FlowTransaction{suffix}": 300}
    assert {k: a["Threshold"] for k, a in alarms.items()} == expected  # the parameters' defaults
    assert {a["ComparisonOperator"] for a in alarms.values()} == {"GreaterThanThreshold"}
    for alarm in alarms.values():
        assert alarm["AlarmActions"] == alarm["OKActions"] == [messaging["AlarmTopicArn"]]


async def test_sns_delivers_postings_into_the_encrypted_queue(stack, messaging):
    sns, sqs = aws(stack, "sns"), aws(stack, "sqs")
    body = json.dumps({"id": str(uuid.uuid4()), "amount": "150.25"})
    sns.publish(TopicArn=messaging["RequestTopicArn"], Message=body,
                MessageAttributes={"tracekey": {"DataType": "String", "StringValue": "t-1"}})
    got = wait_until(lambda: sqs.receive_message(QueueUrl=messaging["QueueUrl"], WaitTimeSeconds=1,
                                                 MessageAttributeNames=["All"]).get("Messages", []),
                     "the posting in the queue", 10, interval=0)
    [message] = got
    assert message["Body"] == body and message["MessageAttributes"]["tracekey"]["StringValue"] == "t-1"
    assert "Messages" not in sqs.receive_message(QueueUrl=messaging["DeliveryDlqUrl"])


def test_archive_bucket_is_versioned_locked_tls_only_and_keyed(stack, archive):
    s3, kms = aws(stack, "s3"), aws(stack, "kms")
    bucket = archive["ArchiveBucketName"]
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    lock = s3.get_object_lock_configuration(Bucket=bucket)["ObjectLockConfiguration"]
    assert lock == {"ObjectLockEnabled": "Enabled", "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 30}}}
    statements = json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"])["Statement"]
    assert {"Sid": "TlsOnly", "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [archive["ArchiveBucketArn"], archive["ArchiveBucketArn"] + "/*"],
            "Condition": {"Bool": {"aws:SecureTransport": "false"}}} in statements
    assert "EventBridgeConfiguration" in s3.get_bucket_notification_configuration(Bucket=bucket)
    assert kms.get_key_rotation_status(KeyId=archive["ArchiveKeyArn"])["KeyRotationEnabled"]
    # Every object is a version under the default retention: it cannot be deleted before then.
    put = s3.put_object(Bucket=bucket, Key="transaction/2026-01.parquet", Body=b"PAR1", ChecksumAlgorithm="SHA256")
    assert put["VersionId"]
    retention = s3.get_object_retention(Bucket=bucket, Key="transaction/2026-01.parquet")["Retention"]
    assert retention["Mode"] == "GOVERNANCE"
    with pytest.raises(s3.exceptions.ClientError, match="AccessDenied"):
        s3.delete_object(Bucket=bucket, Key="transaction/2026-01.parquet", VersionId=put["VersionId"])


# --- outputs -> chart values -----------------------------------------------------------------------

# Stand-ins for the stacks LocalStack cannot deploy (RDS, ECR) or that are another test's (identity):
# what their outputs look like on AWS, published by a stack of outputs only.
STAND_INS = {
    "data": {"PrimaryEndpoint": "flow.c1a2b3.eu-west-1.rds.amazonaws.com", "PrimaryPort": "5432",
             "ReadEndpoint": "flow-replica-1.c1a2b3.eu-west-1.rds.amazonaws.com", "ReadPort": "5432",
             "DatabaseName": "flow", "AppSecretArn": "arn:aws:secretsmanager:us-east-1:000000000000:secret:flow/database/app-AbCdEf",
             "MasterSecretArn": "arn:aws:secretsmanager:us-east-1:000000000000:secret:rds!db-0a1b-AbCdEf",
             "DataKeyArn": "arn:aws:kms:us-east-1:000000000000:key/00000000-0000-0000-0000-000000000001"},
    "registry": {f"{s}RepositoryUri": f"000000000000.dkr.ecr.us-east-1.amazonaws.com/flow-{s.lower()}"
                 for s in ("Ingest", "Engine", "Query")},
    "identity": {f"{s}RoleArn": f"arn:aws:iam::000000000000:role/flow-{s.lower()}"
                 for s in ("Ingest", "Engine", "Query", "Reconcile", "Archive")},
}
# What only people know (the issuer, the migrations' Kubernetes Secret, the CA bundle's ConfigMap).
OPERATOR_SET = ("--set", "database.secretName=flow-database-migrate,database.primaryKey=url,"
                "database.migrationKey=owner-url,database.tls.caConfigMap=rds-ca-bundle,reconcile.enabled=true,"
                "archive.enabled=true")


def outputs_only_template(outputs: dict[str, str]) -> str:
    return json.dumps({"Resources": {"Nothing": {"Type": "AWS::CloudFormation::WaitConditionHandle"}},
                       "Outputs": {k: {"Value": v} for k, v in outputs.items()}})


def test_stack_outputs_become_chart_values_the_chart_accepts(stack, messaging, archive, suffix, tmp_path, monkeypatch):
    for part, outputs in STAND_INS.items():
        path = tmp_path / f"{part}.json"
        path.write_text(outputs_only_template(outputs))
        deploy_messaging(stack.aws_endpoint, path, stack_name=stack_values.STACKS[part] + suffix)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")  # LocalStack's; boto3 wants some
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    values_file = tmp_path / "values-aws.json"
    assert stack_values.main(["--region", "us-east-1", f"--suffix={suffix}", "--endpoint-url", stack.aws_endpoint,
                              "-o", str(values_file)]) == 0
    values = json.loads(values_file.read_text())
    data = STAND_INS["data"]
    assert values["messaging"] == {"requestTopicArn": messaging["RequestTopicArn"],
                                   "callbackTopicArn": messaging["CallbackTopicArn"], "queueUrl": messaging["QueueUrl"]}
    assert values["database"]["primaryUrl"] == f"postgresql+asyncpg://{data['PrimaryEndpoint']}:5432/flow"
    assert values["database"]["replicaUrl"] == f"postgresql+asyncpg://{data['ReadEndpoint']}:5432/flow"
    assert values["archive"] == {"bucket": archive["ArchiveBucketName"],
                                 "serviceAccount": {"roleArn": STAND_INS["identity"]["ArchiveRoleArn"]}}

    done = run(HELM, "template", "flow", CHART, "--namespace", "ledger", *KUBE, "-f", values_file, *AUTH_SET, *OPERATOR_SET)
    assert done.returncode == 0, done.stderr  # the chart's values.schema.json included
    docs = parse_yaml(done.stdout)
    envs = {name: {e["name"]: e.get("value") for e in d["spec"]["template"]["spec"]["containers"][0].get("env", [])}
            for name, d in by_kind(docs, "Deployment").items()}
    assert envs["flow-ingest"]["FLOW_INGEST_REQUEST_TOPIC_ARN"] == messaging["RequestTopicArn"]
    assert envs["flow-engine"]["FLOW_ENGINE_QUEUE_URL"] == messaging["QueueUrl"]
    assert envs["flow-query"]["FLOW_QUERY_DATABASE_SECRET_ID"] == data["AppSecretArn"]
    assert envs["flow-query"]["FLOW_QUERY_ARCHIVE_BUCKET"] == archive["ArchiveBucketName"]
    [cron] = [d for name, d in by_kind(docs, "CronJob").items() if name == "flow-archive"]
    [job] = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"]
    assert {e["name"]: e.get("value") for e in job["env"]}["FLOW_ARCHIVE_BUCKET"] == archive["ArchiveBucketName"]
    for svc in ("ingest", "engine", "query"):
        [container] = by_kind(docs, "Deployment")[f"flow-{svc}"]["spec"]["template"]["spec"]["containers"]
        assert container["image"].startswith(STAND_INS["registry"][f"{svc.capitalize()}RepositoryUri"] + ":")
    role_annotations = {d["metadata"].get("annotations", {}).get("eks.amazonaws.com/role-arn")
                        for d in docs if d["kind"] == "ServiceAccount"}
    assert set(STAND_INS["identity"].values()) <= role_annotations
    assert_valid_kubernetes(docs, tmp_path)


# --- flow_app in the database ----------------------------------------------------------------------

async def test_app_role_creates_a_login_that_owns_nothing_and_realigns_its_password(stack, fresh_database):
    """tools/app_role.py against the stack's PostgreSQL (the owner there is the superuser, trusted on
    loopback; on RDS the master user): a role of the test's own, so flow_app is left alone."""
    database = fresh_database.rsplit("/", 1)[1]
    app = {"username": f"app_{uuid.uuid4().hex[:8]}", "password": "first-" + uuid.uuid4().hex,
           "host": "127.0.0.1", "port": stack.postgres.port, "dbname": database}
    owner = {"username": "postgres", "password": ""}

    async def login(password: str) -> asyncpg.Connection:
        return await asyncpg.connect(host="127.0.0.1", port=stack.postgres.port, database=database,
                                     user=app["username"], password=password)

    await create_app_role(app, owner, tls=None)
    conn = await login(app["password"])
    try:
        assert await conn.fetchval("SELECT count(*) > 0 FROM flow.event")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await conn.execute("CREATE TABLE flow.intruder (x int)")
    finally:
        await conn.close()
    first = app["password"]
    app["password"] = "second-" + uuid.uuid4().hex  # as after a rotation that never reached the database
    await create_app_role(app, owner, tls=None)
    with pytest.raises(asyncpg.InvalidPasswordError):
        await login(first)
    await (await login(app["password"])).close()
    admin = await asyncpg.connect(host="127.0.0.1", port=stack.postgres.port, database=database, user="postgres")
    try:
        await admin.execute(f"DROP OWNED BY {app['username']}; DROP ROLE {app['username']}")
    finally:
        await admin.close()
