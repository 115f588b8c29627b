"""`python -m flow_ingest`: serve the ingest API with settings from the environment."""

from flow_kit.auth import AuthSettings
from flow_kit.serve import serve

from .app import create_app
from .settings import IngestSettings

if __name__ == "__main__":
    serve("ingest", IngestSettings, create_app, AuthSettings)
