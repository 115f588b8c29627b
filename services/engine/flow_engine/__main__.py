"""`python -m flow_engine`: run the engine with settings from the environment."""

from flow_kit.serve import serve

from .app import create_app
from .settings import EngineSettings

if __name__ == "__main__":
    serve("engine", EngineSettings, create_app)
