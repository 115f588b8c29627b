"""LocalStack on the host, from its own virtualenv (its pins clash with the app's)."""

import json
import os
import subprocess
import urllib.request
from pathlib import Path

from .processes import port_is_free, spawn, stop, wait_until

__all__ = ["LocalStack"]

# kms, cloudwatch: messaging.yaml's key and alarms; s3: archive.yaml (tests/test_cloudformation.py). Services
# load on first use: the extra ones cost nothing at start-up (2.2-2.6 s either way, measured).
SERVICES = "sqs,sns,secretsmanager,cloudformation,iam,sts,kms,cloudwatch,s3"


class LocalStack:
    def __init__(self, venv: Path, state_dir: Path, port: int) -> None:
        self.python = venv / "bin" / "python"
        if not self.python.exists():
            raise RuntimeError(f"LocalStack's virtualenv is missing at {venv}; run `make setup`")
        self.state_dir = state_dir
        self.port = port
        self.log = state_dir / "localstack.log"
        self._proc: subprocess.Popen | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.endpoint}/_localstack/health", timeout=2) as response:
            services = json.load(response).get("services", {})
        return all(services.get(name) in ("available", "running") for name in ("sqs", "sns", "cloudformation"))

    def start(self) -> None:
        # If the port is taken LocalStack still logs "Ready." and hangs: check first.
        if not port_is_free(self.port):
            raise RuntimeError(f"port {self.port} is taken; choose another LocalStack port")
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "SERVICES": SERVICES,
            "GATEWAY_LISTEN": f"127.0.0.1:{self.port}",
            "GATEWAY_SERVER": "hypercorn",  # binds loopback only; the default server binds 0.0.0.0
            "LOCALSTACK_HOST": f"127.0.0.1:{self.port}",
            "SQS_ENDPOINT_STRATEGY": "path",
            "CFN_IGNORE_UNSUPPORTED_RESOURCE_TYPES": "0",
            "DISABLE_EVENTS": "1",
            "SKIP_SSL_CERT_DOWNLOAD": "1",
            "LOCALSTACK_VOLUME_DIR": str(self.state_dir / "volume"),
            "FILESYSTEM_ROOT": str(self.state_dir / "root"),
        }
        self._proc = spawn([str(self.python), "-m", "localstack.runtime.main"], log=self.log, env=env)
        wait_until(self._healthy, 90, "LocalStack", self._proc, self.log)

    def stop(self) -> None:
        if self._proc:
            stop(self._proc, timeout=20)
            self._proc = None
