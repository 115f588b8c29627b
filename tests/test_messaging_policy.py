"""Who may put postings on FlowRequest and FlowTransaction: the messaging template, deployed into the
stack's LocalStack with the pods' roles given, makes FlowRequest accept only ingest's publications and
FlowTransaction only FlowRequest's deliveries and the engine's held postings (LocalStack keeps the
policies but does not enforce IAM: what is checked is the policy AWS would enforce)."""

import json
import uuid

import boto3

from tools.devstack.messaging import deploy_messaging
from tools.devstack.stack import ROOT

INGEST_ROLE = "arn:aws:iam::000000000000:role/flow-ingest"
ENGINE_ROLE = "arn:aws:iam::000000000000:role/flow-engine"


def test_only_ingest_publishes_to_flowrequest_and_only_flow_sends_to_flowtransaction(stack):
    suffix = f"-policy{uuid.uuid4().hex[:6]}"
    outputs = deploy_messaging(stack.aws_endpoint, ROOT / "infra" / "cloudformation" / "messaging.yaml",
                               {"NameSuffix": suffix, "IngestRoleArn": INGEST_ROLE, "EngineRoleArn": ENGINE_ROLE},
                               stack_name=f"flow-messaging{suffix}")
    client = {"region_name": "us-east-1", "aws_access_key_id": "test", "aws_secret_access_key": "test",
              "endpoint_url": stack.aws_endpoint}
    topic = json.loads(boto3.client("sns", **client).get_topic_attributes(
        TopicArn=outputs["RequestTopicArn"])["Attributes"]["Policy"])
    [deny] = [s for s in topic["Statement"] if s["Effect"] == "Deny"]
    assert deny["Action"] in ("sns:Publish", ["sns:Publish"])
    assert deny["Condition"] == {"ArnNotEquals": {"aws:PrincipalArn": INGEST_ROLE}}
    queue = json.loads(boto3.client("sqs", **client).get_queue_attributes(
        QueueUrl=outputs["QueueUrl"], AttributeNames=["Policy"])["Attributes"]["Policy"])
    [deny] = [s for s in queue["Statement"] if s["Effect"] == "Deny"]
    assert deny["Condition"] == {"ArnNotEquals": {"aws:SourceArn": outputs["RequestTopicArn"],
                                                  "aws:PrincipalArn": ENGINE_ROLE}}
    # Without the roles (local runs), no such restriction: the test stack's own deployment.
    local = json.loads(boto3.client("sqs", **client).get_queue_attributes(
        QueueUrl=stack.outputs["QueueUrl"], AttributeNames=["Policy"])["Attributes"]["Policy"])
    assert not [s for s in local["Statement"] if s["Effect"] == "Deny"]
