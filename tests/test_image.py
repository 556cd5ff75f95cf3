"""The API image, built by `make image`'s script and run the way ECS runs the task definition that the Pulumi
program renders for each stack (under mocks).

ECS semantics reproduced from the rendered container definition: its user, read-only root filesystem, mount
points and task volumes (an empty bind volume is a root-owned 0755 folder unless the image declares a VOLUME at
that path, then it starts as a copy of the image's folder, as a named volume does), environment, port mappings,
entry point and command, health check (run exactly as written, on the start period and retries ECS allows) and
stop timeout. Only the image reference and MODEL_URI are replaced: the image by the one built here, the model by
a bundle that `python -m workload ingest` and `train` publish to an embedded S3 on the host's loopback.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
import sys
import tarfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from workload_devtools.embedded_s3 import EmbeddedS3
from workload_devtools.synthetic import write_aclimdb_tarball

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT / "scripts"))
import build_image  # noqa: E402 - scripts/ is not a package

pytestmark = pytest.mark.integration

IMAGE_TAG = "imdb-sentiment-api:test"
RUNNER = REPO_ROOT / "tests" / "infra" / "run_program_under_mocks.py"
# ECS's defaults for what a container definition leaves out (Fargate stopTimeout; healthCheck fields).
ECS_STOP_TIMEOUT_S = 30
ECS_HEALTH_DEFAULTS = {"interval": 30, "timeout": 5, "retries": 3, "startPeriod": 0}
# slirp4netns's address for the host's loopback inside the container (with allow_host_loopback).
SLIRP_HOST_LOOPBACK = "10.0.2.2"
REVIEW = "The movie was amazing!"
# Issue 11's bar for the serving image, uncompressed, base image included.
IMAGE_BUDGET_BYTES = 350 * 10**6
WORKLOAD_SOURCES = REPO_ROOT / "workload" / "src" / "workload"
# The workload's boto3 clients, e.g. `boto3.client("s3", config=...)`.
BOTO3_CLIENT = re.compile(r'boto3\.client\(\s*"([a-z0-9-]+)"')


@pytest.fixture(scope="module")
def engine() -> build_image.Engine:
    try:
        return build_image.find_engine()
    except build_image.BuildError as error:
        pytest.skip(f"no container engine to build and run the image: {error}")


@pytest.fixture(scope="module")
def image(engine: build_image.Engine) -> str:
    """The image, built by the same script as `make image`."""
    built = subprocess.run(
        [sys.executable, str(REPO_ROOT / "scripts" / "build_image.py"), "--tag", IMAGE_TAG],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert built.returncode == 0, f"the image build failed:\n{built.stdout[-3000:]}\n{built.stderr[-3000:]}"
    return IMAGE_TAG


@pytest.fixture(scope="module")
def model_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[EmbeddedS3, str]]:
    """An embedded S3 holding a tiny bundle trained from a synthetic corpus by the workload CLI; (S3, its URI)."""
    scratch = tmp_path_factory.mktemp("image-model")
    tarball = write_aclimdb_tarball(scratch / "aclImdb.tar.gz", n_train=60, n_test=30, n_unsup=10, seed=0)
    with EmbeddedS3() as s3:
        s3.client().create_bucket(Bucket="models")
        env = s3.child_env()
        for step in (
            ["ingest", "--source", str(tarball), "--output", "s3://models/processed/tiny"],
            ["train", "--data", "s3://models/processed/tiny", "--output", "s3://models/models/tiny", "--epochs", "3"],
        ):
            done = subprocess.run([sys.executable, "-m", "workload", *step], env=env, capture_output=True, timeout=300)
            assert done.returncode == 0, done.stderr.decode()[-2000:]
        yield s3, "s3://models/models/tiny"


def rendered_task(stack: str, out: Path) -> dict[str, Any]:
    """The API task definition and service that the program registers for `stack`, as the mocks recorded them."""
    completed = subprocess.run(
        [sys.executable, "-W", "ignore::DeprecationWarning", str(RUNNER), str(REPO_ROOT / f"Pulumi.{stack}.yaml"), out],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    resources = json.loads(out.read_text())["resources"]
    # The API's task and service by name: the stack also registers the monitoring job's task definition.
    (task,) = [
        r["inputs"]
        for r in resources
        if r["type"] == "aws:ecs/taskDefinition:TaskDefinition" and r["name"] == "api-task"
    ]
    (service,) = [
        r["inputs"] for r in resources if r["type"] == "aws:ecs/service:Service" and r["name"] == "api-service"
    ]
    return {**task, "containerDefinitions": json.loads(task["containerDefinitions"]), "service": service}


class EcsContainer:
    """One container definition run by the engine with ECS's semantics; removed (with its volumes) on exit."""

    def __init__(self, engine: build_image.Engine, image: str, task: dict[str, Any], scratch: Path) -> None:
        (self.definition,) = [c for c in task["containerDefinitions"] if c.get("essential", True)]
        self.engine, self.image, self.task, self.scratch = engine, image, task, scratch
        self.name = f"imdb-image-test-{uuid.uuid4().hex[:8]}"
        self.volumes: list[str] = []

    def _volume_args(self) -> list[str]:
        declared = json.loads(
            self.engine.run("image", "inspect", "--format", "{{json .Config.Volumes}}", self.image).stdout
        )
        task_volumes = {volume["name"]: volume for volume in self.task.get("volumes", [])}
        args = []
        for mount in self.definition.get("mountPoints", []):
            volume, path = task_volumes[mount["sourceVolume"]], mount["containerPath"]
            assert set(volume) == {"name"}, f"only empty bind volumes are reproduced here, not {volume}"
            if path in (declared or {}):
                # The image declares it: ECS's volume starts as a copy of the image's folder, like a named volume.
                source = f"{self.name}-{volume['name']}"
                self.engine.run("volume", "create", source)
                self.volumes.append(source)
            else:
                # ECS creates an empty folder owned by root with mode 0755.
                folder = self.scratch / volume["name"]
                folder.mkdir(mode=0o755)
                folder.chmod(0o755)
                source = str(folder)
            args += ["--volume", f"{source}:{path}:{'ro' if mount.get('readOnly') else 'rw'}"]
        return args

    def _network_args(self, port: int) -> tuple[list[str], str]:
        """(engine arguments, the URL of the host's loopback `port` as the container reaches it)."""
        if self.engine.name == "podman":
            ports = [f"127.0.0.1::{m['containerPort']}" for m in self.definition.get("portMappings", [])]
            published = [arg for spec in ports for arg in ("--publish", spec)]
            return [
                "--network",
                "slirp4netns:allow_host_loopback=true",
                *published,
            ], f"http://{SLIRP_HOST_LOOPBACK}:{port}"
        return ["--network", "host"], f"http://127.0.0.1:{port}"

    def start(self, s3: EmbeddedS3, model_uri: str) -> None:
        """Run it with the model at `model_uri` on `s3` in place of the rendered MODEL_URI."""
        network, endpoint = self._network_args(s3.port)
        environment = {e["name"]: e["value"] for e in self.definition.get("environment", [])}
        assert "MODEL_URI" in environment, "the task must tell the container where its model is"
        environment.update(s3.child_env({}), AWS_ENDPOINT_URL_S3=endpoint, MODEL_URI=model_uri)
        args = ["run", "--detach", "--name", self.name, *network, *self._volume_args()]
        if self.definition.get("user"):
            args += ["--user", self.definition["user"]]
        if self.definition.get("readonlyRootFilesystem"):
            # Podman adds writable tmpfs on /tmp, /var/tmp and /run to a read-only container; ECS does not.
            args += ["--read-only", *(["--read-only-tmpfs=false"] if self.engine.name == "podman" else [])]
        args += [arg for key, value in environment.items() for arg in ("--env", f"{key}={value}")]
        if self.definition.get("entryPoint"):
            args += ["--entrypoint", json.dumps(self.definition["entryPoint"])]
        self.engine.run(*args, self.image, *self.definition.get("command", []))

    def url(self, container_port: int) -> str:
        if self.engine.name != "podman":
            return f"http://127.0.0.1:{container_port}"
        address = self.engine.run("port", self.name, f"{container_port}/tcp").stdout.split()[0]
        return f"http://{address}"

    def health_check_passes(self) -> bool:
        check = {**ECS_HEALTH_DEFAULTS, **self.definition["healthCheck"]}
        kind, *command = check["command"]
        command = ["/bin/sh", "-c", *command] if kind == "CMD-SHELL" else command
        try:
            result = subprocess.run(
                [self.engine.name, "exec", self.name, *command],
                env=self.engine.env,
                capture_output=True,
                timeout=check["timeout"],
            )
        except subprocess.TimeoutExpired:
            return False
        return result.returncode == 0

    def state(self) -> dict[str, Any]:
        return json.loads(self.engine.run("inspect", "--format", "{{json .State}}", self.name).stdout)

    def logs(self) -> str:
        return self.engine.run("logs", self.name, check=False).stderr[-3000:]

    def remove(self) -> None:
        self.engine.run("rm", "--force", self.name, check=False)
        for volume in self.volumes:
            self.engine.run("volume", "rm", "--force", volume, check=False)


def process_uids(container: EcsContainer) -> dict[str, str]:
    """Every process in the container (its /proc) with its real, effective, saved and filesystem uids."""
    script = (
        "import pathlib\n"
        "for status in pathlib.Path('/proc').glob('[0-9]*/status'):\n"
        "    fields = dict(line.split(':', 1) for line in status.read_text().splitlines())\n"
        "    print(status.parent.name, fields['Name'].strip(), fields['Uid'].split())\n"
    )
    listing = container.engine.run("exec", container.name, "python", "-c", script).stdout
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] for line in listing.splitlines()}


@pytest.fixture
def container(engine, image, tmp_path, request) -> Iterator[EcsContainer]:
    task = rendered_task(request.param, tmp_path / "program.json")
    running = EcsContainer(engine, image, task, tmp_path)
    try:
        yield running
    finally:
        running.remove()


@pytest.mark.parametrize("container", ["dev", "prod"], indirect=True)
def test_the_image_runs_as_the_rendered_ecs_task(container: EcsContainer, model_s3) -> None:
    check = {**ECS_HEALTH_DEFAULTS, **container.definition["healthCheck"]}
    grace_s = check["startPeriod"] + check["retries"] * check["interval"]
    started = time.monotonic()
    container.start(*model_s3)
    while not container.health_check_passes():
        state = container.state()
        assert state["Running"], (
            f"the container exited ({state['ExitCode']}) before turning healthy:\n{container.logs()}"
        )
        assert time.monotonic() - started < grace_s, f"not healthy within {grace_s} s:\n{container.logs()}"
        time.sleep(1)
    print(f"start -> healthy: {time.monotonic() - started:.1f} s (ECS allows {grace_s} s)")

    app_port = int(container.task["service"]["loadBalancers"][0]["containerPort"])  # the mocks record floats
    request = urllib.request.Request(
        container.url(app_port) + "/predict",
        data=json.dumps({"text": REVIEW}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.load(response)["label"] == "positive"

    processes = process_uids(container)
    assert len(processes) >= 2, processes  # at least the gunicorn master and a worker
    root = {pid: info for pid, info in processes.items() if "'0'" in info}
    assert not root, f"processes running as root: {root}"

    stop_timeout = container.definition.get("stopTimeout", ECS_STOP_TIMEOUT_S)
    stopping = time.monotonic()
    container.engine.run("stop", "--time", str(stop_timeout), container.name)
    stopped_in = time.monotonic() - stopping
    exit_code = container.state()["ExitCode"]
    assert exit_code == 0, f"SIGTERM ended the container with status {exit_code}:\n{container.logs()}"
    assert stopped_in < stop_timeout, f"stopping took {stopped_in:.1f} s, past the {stop_timeout} s stop timeout"


def test_no_layer_holds_the_build_machines_pip_configuration(engine, image, tmp_path) -> None:
    """Pip's settings and CA bundle reached the build as secrets and mounts: no file in any layer, no ENV and no
    history line of the image carries them."""
    settings = build_image.pip_settings()
    located = build_image.PATH_SETTINGS + build_image.INDEX_SETTINGS
    entries = {
        entry
        for section in settings.values()
        for name, value in section.items()
        if name in located
        for entry in value.split()
    }
    cert = settings.get("global", {}).get("cert")
    env = json.loads(engine.run("image", "inspect", "--format", "{{json .Config.Env}}", image).stdout)
    history = engine.run("history", "--no-trunc", "--format", "{{.CreatedBy}}", image).stdout
    for entry in entries | ({cert} if cert else set()):
        assert entry not in json.dumps(env) + history, f"the image's ENV or history names {entry}"

    # The CA bundle's path is a standard one that Debian's own files mention; its content is what must not leak.
    needles = [entry.encode() for entry in entries]
    cert_digest = hashlib.sha256(Path(cert).read_bytes()).hexdigest() if cert else None

    archive = tmp_path / "image.tar"
    engine.run("save", "--output", str(archive), image)
    with tarfile.open(archive) as outer:
        layers = [member for member in outer.getmembers() if member.name.endswith((".tar", "layer"))]
        assert layers, "no layers found in the saved image"
        for layer in layers:
            with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
                for member in inner:
                    if not member.isfile():
                        continue
                    data = inner.extractfile(member).read()
                    found = [needle for needle in needles if needle in data]
                    assert not found, f"{member.name} in a layer holds pip's {found}"
                    assert hashlib.sha256(data).hexdigest() != cert_digest, f"{member.name} is the build's CA bundle"


def aws_services_the_image_calls() -> set[str]:
    """The services the workload builds boto3 clients for, but launch-training's (cloud/: the operator's machine
    runs it, not the image)."""
    return {
        service
        for path in WORKLOAD_SOURCES.rglob("*.py")
        if "cloud" not in path.relative_to(WORKLOAD_SOURCES).parts
        for service in BOTO3_CLIENT.findall(path.read_text())
    }


def test_the_image_builds_every_aws_client_the_workload_calls(engine, image) -> None:
    """The image keeps botocore's models for the services it calls only: each of those clients builds and knows
    the operations the workload uses; a service it never calls (EC2) is gone, so the check above means something."""
    services = aws_services_the_image_calls()
    assert {"s3", "cloudwatch"} <= services, services
    script = (
        "import sys, boto3, botocore.exceptions\n"
        "for service in sys.argv[1:]:\n"
        "    boto3.client(service, region_name='us-east-1')\n"
        "s3_client = boto3.client('s3', region_name='us-east-1')\n"
        "s3_client.get_paginator('list_objects_v2')\n"
        "s3 = s3_client.meta.service_model\n"
        "cloudwatch = boto3.client('cloudwatch', region_name='us-east-1').meta.service_model\n"
        "for operation in ('GetObject', 'PutObject', 'ListObjectsV2'):\n"
        "    s3.operation_model(operation)\n"
        "cloudwatch.operation_model('PutMetricData')\n"
        "try:\n"
        "    boto3.client('ec2', region_name='us-east-1')\n"
        "except botocore.exceptions.UnknownServiceError:\n"
        "    print('ec2 absent')\n"
    )
    ran = engine.run("run", "--rm", "--entrypoint", "python", image, "-c", script, *sorted(services), check=False)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert "ec2 absent" in ran.stdout, "botocore still holds the models of services the image never calls"


def test_the_image_fits_its_size_budget(engine, image) -> None:
    """At most 350 MB uncompressed, the base image included (on a stand-in base, see docs/image.md)."""
    (base,) = build_image.base_images()
    sizes = {
        name: int(engine.run("image", "inspect", "--format", "{{.Size}}", name).stdout)
        for name in (image, build_image.qualified(base))
    }
    ours = sizes[image] - sizes[build_image.qualified(base)]
    print(f"image {sizes[image] / 1e6:.0f} MB: base {(sizes[image] - ours) / 1e6:.0f} MB, ours {ours / 1e6:.0f} MB")
    assert sizes[image] <= IMAGE_BUDGET_BYTES, f"the image is {sizes[image] / 1e6:.0f} MB"


def test_a_stand_in_base_is_made_like_the_official_image(engine, image) -> None:
    """Where the official python:*-slim image could not be pulled, the stand-in has its slim layout: no
    documentation but copyright files, no manuals or translations, no apt lists, no perl beyond perl-base, and a
    Python without bytecode or test suites, `python` on PATH, that makes venvs."""
    base = build_image.qualified(build_image.base_images()[0])
    config = json.loads(engine.run("image", "inspect", "--format", "{{json .Config}}", base).stdout)
    if any(variable.startswith("PYTHON_VERSION=") for variable in config.get("Env") or []):
        pytest.skip("the official base image was pulled (it sets PYTHON_VERSION): no stand-in to check")
    script = (
        "set -e\n"
        "find /usr/share/doc -type f ! -name copyright | head -3\n"
        # install-info's index (/usr/share/info/dir) is a file of the system, not a package's documentation.
        "find /usr/share/man /usr/share/info /usr/share/locale -type f ! -name locale.alias ! -name dir | head -3\n"
        "find /var/lib/apt/lists -type f ! -name lock | head -3\n"
        "find /usr/lib/python3* \\( -name '*.pyc' -o -type d -name tests -o -type d -name test \\) | head -3\n"
        "dpkg-query -W -f '${db:Status-Status} ${Package}\\n' perl usrmerge 2>/dev/null | grep ^installed || true\n"
        "python -m venv /tmp/venv >/dev/null && /tmp/venv/bin/python -c 'import ssl, sqlite3, lzma, bz2, ctypes'\n"
    )
    ran = engine.run("run", "--rm", "--entrypoint", "sh", base, "-c", script, check=False)
    assert ran.returncode == 0, ran.stderr[-2000:]
    assert not ran.stdout.strip(), f"the stand-in holds what the official slim image leaves out:\n{ran.stdout}"
