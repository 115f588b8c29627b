"""FLOW's services run from their images (podman), set up the way the Helm chart sets up their pods.

Each container's image, command, environment and security settings are read from `helm template` of
charts/flow, rendered with values that point at this stack (its ports, LocalStack's topics and queue,
the databases and their Secrets Manager secrets, the development issuer). Two things are added, as a
cluster would add them: the AWS credentials the pod identity supplies (LocalStack's test ones here),
and the values of the Kubernetes Secrets the pods reference. One is changed: the containers share
the host's network, so the services listen on loopback only instead of 0.0.0.0.

Security settings taken from the pod: the user and group (runAsUser/runAsGroup), a read-only root
filesystem with nothing writable but the chart's emptyDir volumes (tmpfs of their sizeLimit; podman
adds no tmpfs of its own), every capability dropped, no privilege escalation, the default seccomp
profile.
"""

import json
import os
import re
import subprocess
from pathlib import Path

import yaml

from .processes import spawn

__all__ = ["IMAGE_TAG", "ChartPods", "ImageRunner", "containers_env", "merge_values"]

ROOT = Path(__file__).resolve().parents[2]
HELM = ROOT / ".state" / "bin" / "helm"
IMAGE_TAG = os.environ.get("FLOW_IMAGE_TAG", "dev")


def containers_env() -> dict[str, str]:
    """The container storage and configuration tools/images.sh builds into (CONTAINERS_*)."""
    out = subprocess.run(["bash", str(ROOT / "tools" / "images.sh"), "env"], capture_output=True, text=True, check=True)
    return dict(re.findall(r"(\w+)=(\S+)", out.stdout))


def merge_values(base: dict, more: dict) -> dict:
    """Helm's way: `more` over `base`, maps merged key by key."""
    merged = dict(base)
    for key, value in more.items():
        merged[key] = merge_values(merged[key], value) if isinstance(value, dict) and isinstance(merged.get(key), dict) else value
    return merged


class ChartPods:
    """The chart rendered with `values`: the pod and container of each workload, by component."""

    def __init__(self, values: dict, secrets: dict[str, dict[str, str]]) -> None:
        self.secrets = secrets  # the Kubernetes Secrets the pods reference: name -> key -> value
        done = subprocess.run([str(HELM), "template", "flow", str(ROOT / "charts" / "flow"), "--namespace", "flow",
                               "-f", "-"], input=json.dumps(values), capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"helm template failed: {done.stderr.strip()}")
        self.pods: dict[str, dict] = {}
        for doc in yaml.safe_load_all(done.stdout):
            if doc and doc["kind"] in ("Deployment", "Job"):
                self.pods[doc["metadata"]["labels"]["app.kubernetes.io/component"]] = doc["spec"]["template"]["spec"]

    def env(self, container: dict) -> dict[str, str]:
        env = {}
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = item["value"]
            else:
                ref = item["valueFrom"]["secretKeyRef"]
                env[item["name"]] = self.secrets[ref["name"]][ref["key"]]
        return env

    def podman_args(self, component: str, extra_env: dict[str, str]) -> list[str]:
        """`podman run` arguments (after `run`) for the component's pod, as the kubelet would start it."""
        pod = self.pods[component]
        [container] = pod["containers"]
        security = {**pod.get("securityContext", {}), **container.get("securityContext", {})}
        args = ["--network=host", f"--user={security['runAsUser']}:{security['runAsGroup']}",
                f"--stop-timeout={pod.get('terminationGracePeriodSeconds', 30)}",
                # No systemd timers here: the image's HEALTHCHECK runs on demand (podman healthcheck run).
                "--health-interval=disable"]
        if security.get("readOnlyRootFilesystem"):
            args += ["--read-only", "--read-only-tmpfs=false"]
        if "ALL" in security.get("capabilities", {}).get("drop", []):
            args.append("--cap-drop=all")
        if security.get("allowPrivilegeEscalation") is False:
            args.append("--security-opt=no-new-privileges")
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        for mount in container.get("volumeMounts", []):
            empty_dir = volumes[mount["name"]]["emptyDir"]
            size = empty_dir.get("sizeLimit", "64Mi").replace("Mi", "m").replace("Gi", "g")
            args.append(f"--mount=type=tmpfs,destination={mount['mountPath']},tmpfs-size={size}")
        env = {**self.env(container), **extra_env}
        for name, value in env.items():
            args.append(f"--env={name}={value}")
        if "command" in container:
            args.append(f"--entrypoint={json.dumps(container['command'])}")
        args.append(container["image"])
        # $(NAME) in args is the kubelet's expansion from the container's env.
        args += [re.sub(r"\$\((\w+)\)", lambda m: env[m.group(1)], arg) for arg in container.get("args", [])]
        return args


class ImageRunner:
    """Starts FLOW's containers with podman, and removes every one of them when asked."""

    def __init__(self, pods: ChartPods, aws_env: dict[str, str]) -> None:
        self.pods = pods
        self.aws_env = aws_env
        self.env = {**os.environ, **containers_env()}
        self.names: list[str] = []

    def _run_args(self, component: str, name: str) -> list[str]:
        extra = dict(self.aws_env)
        host = f"FLOW_{component.upper()}_HTTP_HOST"
        if host in self.pods.env(self.pods.pods[component]["containers"][0]):
            extra[host] = "127.0.0.1"  # the host's network: loopback only
        self.names.append(name)
        # Errors still print at this level; it silences podman's complaint that no systemd is there to
        # schedule the HEALTHCHECK (run on demand instead).
        return ["podman", "--log-level=fatal", "run", "--rm", f"--name={name}", *self.pods.podman_args(component, extra)]

    def migrate(self, name: str) -> str:
        """Runs the chart's migration Job (the engine image's flow-migrate) to completion; its output."""
        subprocess.run(["podman", "rm", "--force", "--ignore", name], env=self.env, capture_output=True)
        done = subprocess.run(self._run_args("migrate", name), env=self.env, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"flow-migrate (engine image) failed with status {done.returncode}: "
                               f"{done.stdout}{done.stderr}")
        return done.stdout + done.stderr

    def spawn(self, component: str, name: str, log: Path | None) -> subprocess.Popen:
        """The component's container in the foreground of a `podman run`: signals sent to that process
        reach the service (podman proxies them), and its output goes to `log`."""
        subprocess.run(["podman", "rm", "--force", "--ignore", name], env=self.env, capture_output=True)
        return spawn(self._run_args(component, name), log=log, env=self.env)

    def podman(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["podman", *args], env=self.env, capture_output=True, text=True)

    def remove_all(self) -> None:
        if self.names:
            self.podman("rm", "--force", "--ignore", "--time=0", *self.names)
            self.names.clear()

