"""The container image, checked without a Docker engine: the Dockerfile lints clean and says what the image
must do, and the command the image runs works from a clean venv of the workload's serve requirements."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from workload_devtools.server_process import ServerProcess

WORKLOAD_DIR = Path(__file__).resolve().parents[2] / "workload"
DOCKERFILE = WORKLOAD_DIR / "Dockerfile"
TRIM_VENV = WORKLOAD_DIR / "docker" / "trim_venv.py"


def test_hadolint_is_clean():
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).with_name("hadolint"))
    result = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_dockerfile_builds_the_image_the_platform_expects():
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM\s+(\S+)(?:\s+AS\s+(\S+))?", text, flags=re.MULTILINE | re.IGNORECASE)
    assert len(stages) >= 2, "multi-stage build"
    final = text[list(re.finditer(r"^FROM ", text, flags=re.MULTILINE))[-1].start() :]
    assert not re.search(r"pip install[^\n]*torch", text), "the serving image installs no torch"
    # Indexes come from the build machine's pip configuration (a build secret), never from the Dockerfile.
    assert "--mount=type=secret,id=pip.conf,target=/etc/pip.conf" in text and "index-url" not in text
    assert re.search(r'^VOLUME \["/tmp"\]', final, flags=re.MULTILINE), "ECS's /tmp volume inherits the image's 1777"
    assert re.search(r"^USER\s+(?!0\b|root\b)\S+", final, flags=re.MULTILINE), "final stage runs as non-root"
    assert re.search(r"^EXPOSE\s+8080\b", final, flags=re.MULTILINE)
    assert re.search(r"^EXPOSE\s+8081\b", final, flags=re.MULTILINE), "the ops port"
    # Liveness on the ops port: the app port's workers may all be busy, and /health (readiness) is the ALB's.
    assert re.search(r"^HEALTHCHECK .*\n?.*127\.0\.0\.1:8081/health/live\b", final, flags=re.MULTILINE)
    assert 'ENTRYPOINT ["python", "-m", "workload", "serve"]' in final
    assert "COPY --from=builder /opt/dist /opt/dist" in final, "the wheel ships in the image for EC2 training"
    assert re.search(r"/opt/dist/\*\.whl.*pip install .*\[serve\]", text), "the image installs the very wheel it ships"
    # The clean-venv test below runs the same script, so what it serves from is what the image serves from.
    assert "COPY docker/trim_venv.py" in text and "/opt/venv/bin/python trim_venv.py" in text
    # No compilers or package installs in the final stage: it only copies the builder's venv.
    assert not re.search(r"gcc|g\+\+|build-essential|apt-get|pip install", final)


def test_dockerignore_keeps_the_context_to_the_package():
    lines = [line.strip() for line in (WORKLOAD_DIR / ".dockerignore").read_text().splitlines()]
    assert "*" in lines and "!src/" in lines and "!pyproject.toml" in lines


@pytest.mark.integration
def test_the_image_command_runs_from_a_clean_venv(tmp_path, tiny_bundle, bilstm_bundle):
    """What the Dockerfile's builder does, minus Docker: a fresh venv, the workload built into a wheel,
    `pip install <that wheel>[serve]` and docker/trim_venv.py. That venv has no torch (nor huggingface-hub, nor
    ONNX Runtime's C library), and serves every architecture."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "--quiet", "--no-cache-dir"]
    dist = tmp_path / "dist"
    build = subprocess.run(
        [*pip, "wheel", "--no-deps", "--wheel-dir", str(dist), str(WORKLOAD_DIR)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-3000:]
    (wheel,) = dist.glob("*.whl")
    install = subprocess.run(
        [*pip, "install", "--no-compile", f"{wheel}[serve]"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    trim = subprocess.run([python, str(TRIM_VENV)], capture_output=True, text=True, timeout=300)
    assert trim.returncode == 0, trim.stdout[-3000:] + trim.stderr[-3000:]

    help_run = subprocess.run(
        [python, "-m", "workload", "serve", "--help"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert help_run.returncode == 0 and "--model" in help_run.stdout, help_run.stderr

    no_torch = subprocess.run([python, "-c", "import torch"], capture_output=True, text=True, timeout=60)
    assert no_torch.returncode != 0 and "No module named 'torch'" in no_torch.stderr

    for bundle in (tiny_bundle, bilstm_bundle[0]):
        with ServerProcess(str(bundle), python=python, log_path=tmp_path / f"{bundle.name}.log") as server:
            server.wait_ready(timeout=90)
            request = urllib.request.Request(
                server.url + "/predict",
                data=json.dumps({"text": "The movie was amazing!"}).encode(),
                headers={"Content-Type": "application/json"},
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                prediction = json.load(response)
            assert prediction["label"] in ("positive", "negative") and 0 <= prediction["score"] <= 1, bundle.name
    # The clean venv served its own installed copy, not this checkout's editable one.
    assert (
        str(venv)
        in subprocess.run(
            [python, "-c", "import workload; print(workload.__file__)"], capture_output=True, text=True, cwd=tmp_path
        ).stdout
    )
