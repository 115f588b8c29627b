"""The engine process: queue pollers, plus a small HTTP server for health and metrics."""

import asyncio
from contextlib import AsyncExitStack, asynccontextmanager

from fastapi import FastAPI

from flow_kit.aws import AwsClients
from flow_kit.db import create_engine, ping
from flow_kit.health import health_router

from .callbacks import CallbackPublisher
from .consumer import Consumer
from .settings import EngineSettings

__all__ = ["create_app"]


def create_app(settings: EngineSettings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI):
        async with AsyncExitStack() as stack:
            db = create_engine(settings.database_url, settings.database_pool_size, "flow-engine")
            stack.push_async_callback(db.dispose)
            clients = AwsClients(settings)
            sqs = await stack.enter_async_context(clients.client("sqs"))
            sns = await stack.enter_async_context(clients.client("sns"))
            callbacks = CallbackPublisher(sns, settings.callback_topic_arn)
            consumer = Consumer(settings, db, sqs, callbacks)
            app.state.checks = {"database": lambda: ping(db), "sqs": consumer.check, "sns": callbacks.check}
            pollers = [asyncio.create_task(consumer.run(n)) for n in range(settings.pollers)]
            try:
                yield
            finally:
                # Let each poller finish the batch in hand; a long poll ends within wait_seconds.
                consumer.stop()
                _, pending = await asyncio.wait(pollers, timeout=settings.wait_seconds + 30)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pollers, return_exceptions=True)

    app = FastAPI(title="FLOW engine", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None)
    app.include_router(health_router(lambda: app.state.checks))
    return app
