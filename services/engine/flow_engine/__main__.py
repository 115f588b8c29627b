"""`flow-engine` (or `python -m flow_engine`): run the engine with settings from the environment;
`flow-engine health` asks the running engine's /healthz (the image's HEALTHCHECK)."""

from flow_kit.serve import serve

from .app import create_app
from .settings import EngineSettings


def main() -> None:
    serve("engine", EngineSettings, create_app)


if __name__ == "__main__":
    main()
