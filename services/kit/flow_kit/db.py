"""The database engine factory: SQLAlchemy Core on asyncpg, UTC sessions."""

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

__all__ = ["create_engine", "ping"]


def create_engine(url: str, pool_size: int = 5, application_name: str = "flow") -> AsyncEngine:
    return create_async_engine(
        url,
        pool_size=pool_size,
        max_overflow=0,
        pool_pre_ping=True,
        connect_args={"server_settings": {"timezone": "UTC", "application_name": application_name}},
    )


async def ping(engine: AsyncEngine) -> None:
    async with engine.connect() as conn:
        await conn.execute(text("SELECT 1"))
