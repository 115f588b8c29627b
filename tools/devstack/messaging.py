"""Deploys infra/cloudformation/messaging.yaml: the same template local runs and AWS use."""

import time
from pathlib import Path

import boto3

__all__ = ["deploy_messaging", "local_aws_env"]

STACK_NAME = "flow-messaging"


def local_aws_env(endpoint: str) -> dict[str, str]:
    """Credentials LocalStack accepts; never real ones."""
    return {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint}


def deploy_messaging(endpoint: str, template: Path, parameters: dict[str, str] | None = None,
                     timeout: float = 60, stack_name: str = STACK_NAME) -> dict[str, str]:
    """Creates the stack (or finds it) and returns its outputs."""
    cfn = boto3.client("cloudformation", endpoint_url=endpoint, region_name="us-east-1",
                       aws_access_key_id="test", aws_secret_access_key="test")
    try:
        cfn.create_stack(StackName=stack_name, TemplateBody=template.read_text(),
                         Parameters=[{"ParameterKey": k, "ParameterValue": str(v)} for k, v in (parameters or {}).items()])
    except cfn.exceptions.AlreadyExistsException:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
        status = stack["StackStatus"]
        if status == "CREATE_COMPLETE":
            return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        if status.endswith("FAILED") or "ROLLBACK" in status:
            events = cfn.describe_stack_events(StackName=stack_name)["StackEvents"]
            reasons = [f"{e['LogicalResourceId']}: {e.get('ResourceStatusReason')}" for e in events if "FAILED" in e["ResourceStatus"]]
            raise RuntimeError(f"messaging stack {status}: " + "; ".join(reasons))
        time.sleep(0.3)
    raise RuntimeError("messaging stack not created in time")
