"""`python -m flow_query`: serve the query API with settings from the environment."""

from flow_kit.auth import AuthSettings
from flow_kit.serve import serve

from .app import create_app
from .settings import QuerySettings

if __name__ == "__main__":
    serve("query", QuerySettings, create_app, AuthSettings)
