"""`flow-query` (or `python -m flow_query`): serve the query API with settings from the environment;
`flow-query health` asks the running service's /healthz (the image's HEALTHCHECK)."""

from flow_kit.auth import AuthSettings
from flow_kit.serve import serve

from .app import create_app
from .settings import QuerySettings


def main() -> None:
    serve("query", QuerySettings, create_app, AuthSettings)


if __name__ == "__main__":
    main()
