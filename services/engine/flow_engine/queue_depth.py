"""How many postings wait in FlowTransaction and in its dead-letter queue, as metrics.

SQS reports these counts to CloudWatch only; sampled here, they reach Prometheus with the rest of
FLOW's metrics, for the dashboard and the alerts (a growing backlog, anything in the DLQ). The
dead-letter queue is the one the queue's RedrivePolicy names. The counts are SQS's approximate ones;
every engine pod reports the same figures, so dashboards and alerts take the max over pods.
"""

import asyncio
import json
import logging

from prometheus_client import Gauge

__all__ = ["QUEUE_MESSAGES", "QueueDepth"]

_log = logging.getLogger(__name__)

QUEUE_MESSAGES = Gauge(
    "flow_engine_queue_messages",
    "Messages in FlowTransaction and its dead-letter queue "
    "(SQS's approximate counts): visible, in_flight (received, not yet deleted), delayed",
    ["queue", "state"],
)
_STATES = {
    "ApproximateNumberOfMessages": "visible",
    "ApproximateNumberOfMessagesNotVisible": "in_flight",
    "ApproximateNumberOfMessagesDelayed": "delayed",
}
# The queues' names in the metric: the template's, whatever suffix a deployment gives them.
WORK, DEAD_LETTERS = "FlowTransaction", "FlowTransactionDlq"


class QueueDepth:
    def __init__(self, sqs, queue_url: str, interval_seconds: float) -> None:
        self._sqs = sqs
        self._queues = {WORK: queue_url}
        self._interval = interval_seconds
        self._looked_for_dead_letters = False

    async def _find_dead_letter_queue(self) -> None:
        answer = await self._sqs.get_queue_attributes(QueueUrl=self._queues[WORK], AttributeNames=["RedrivePolicy"])
        if "RedrivePolicy" in answer.get("Attributes", {}):  # no Attributes at all when there is none
            # arn:aws:sqs:<region>:<account>:<name>
            arn = json.loads(answer["Attributes"]["RedrivePolicy"])["deadLetterTargetArn"]
            _, _, _, _, account, name = arn.split(":")
            found = await self._sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)
            self._queues[DEAD_LETTERS] = found["QueueUrl"]
        self._looked_for_dead_letters = True

    async def sample(self) -> None:
        """Reads both queues' counts into the gauge."""
        if not self._looked_for_dead_letters:
            await self._find_dead_letter_queue()
        for name, url in self._queues.items():
            answer = await self._sqs.get_queue_attributes(QueueUrl=url, AttributeNames=list(_STATES))
            for attribute, state in _STATES.items():
                QUEUE_MESSAGES.labels(name, state).set(int(answer["Attributes"][attribute]))

    async def run(self) -> None:
        while True:
            try:
                await self.sample()
            except Exception as exc:  # a metric: never worth stopping the engine for
                _log.warning("queue depth not sampled; trying again later", extra={"error": repr(exc)})
            await asyncio.sleep(self._interval)
