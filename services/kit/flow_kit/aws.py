"""The AWS client factory: one place for endpoint, region, timeouts and retry mode."""

import aioboto3
from aiobotocore.config import AioConfig

from .settings import ServiceSettings

__all__ = ["AwsClients"]


class AwsClients:
    """Builds aioboto3 clients that talk to AWS, or to LocalStack when an endpoint URL is set."""

    def __init__(self, settings: ServiceSettings) -> None:
        self._session = aioboto3.Session(region_name=settings.aws_region)
        self._endpoint_url = settings.aws_endpoint_url
        self._config = AioConfig(
            connect_timeout=settings.aws_connect_timeout_seconds,
            read_timeout=settings.aws_read_timeout_seconds,
            retries={"mode": "standard", "max_attempts": settings.aws_max_attempts},
            max_pool_connections=50,
        )

    def client(self, service: str):
        """An async context manager yielding a client, e.g. `async with clients.client("sqs") as sqs`."""
        return self._session.client(service, endpoint_url=self._endpoint_url, config=self._config)
