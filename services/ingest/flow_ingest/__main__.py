"""`flow-ingest` (or `python -m flow_ingest`): serve the ingest API with settings from the environment;
`flow-ingest health` asks the running service's /healthz (the image's HEALTHCHECK)."""

from flow_kit.auth import AuthSettings
from flow_kit.serve import serve

from .app import create_app
from .settings import IngestSettings


def main() -> None:
    serve("ingest", IngestSettings, create_app, AuthSettings)


if __name__ == "__main__":
    main()
