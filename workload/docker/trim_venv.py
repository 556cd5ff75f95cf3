"""Remove from a serving venv what serving never uses (docs/image.md has the sizes), after the wheel's
`[serve]` install and with that venv's own Python:

    /opt/venv/bin/python docker/trim_venv.py

- Distributions: pip and setuptools (nothing installs at run time; EC2 training installs the wheel with its own
  pip), and huggingface-hub with whatever only it pulled in. tokenizers requires huggingface-hub for
  `Tokenizer.from_pretrained` (a download from the Hub); bundles carry their own tokenizer.json.
- botocore's models of the services the workload never calls: it keeps those in BOTOCORE_SERVICES.
- ONNX Runtime's C API library (libonnxruntime.so): the Python binding carries its own copy of the runtime and
  does not load it.
- numpy's test suites.
"""

from __future__ import annotations

import importlib.metadata
import re
import shutil
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

WORKLOAD = "imdb-sentiment-workload"
SERVING_EXTRAS = {"serve"}
UNUSED = {"pip", "setuptools", "huggingface-hub"}
# s3: bundles, processed data and data capture; cloudwatch: the monitoring job's metrics; sts: credentials from
# an assumed role (AWS_ROLE_ARN, a profile's role_arn). The clients the workload builds are checked against this
# list by tests/workload/test_docker.py.
BOTOCORE_SERVICES = {"s3", "cloudwatch", "sts"}


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def needed_distributions() -> set[str]:
    """The workload and everything its serving install requires, following requirements past UNUSED."""
    needed: set[str] = set()
    pending = [(WORKLOAD, SERVING_EXTRAS)]
    while pending:
        name, extras = pending.pop()
        if name in needed or name in UNUSED:
            continue
        needed.add(name)
        for line in importlib.metadata.distribution(name).requires or []:
            requirement = Requirement(line)
            environments = [{"extra": extra} for extra in extras or {""}]
            if requirement.marker is None or any(requirement.marker.evaluate(env) for env in environments):
                pending.append((canonical(requirement.name), set(requirement.extras)))
    return needed


def site_packages() -> Path:
    return Path(importlib.metadata.distribution(WORKLOAD).locate_file(""))


def remove_unused_distributions() -> list[str]:
    needed = needed_distributions()
    installed = {canonical(dist.metadata["Name"]) for dist in importlib.metadata.distributions()}
    unused = sorted(installed - needed)
    # pip last: it uninstalls the others and then itself.
    ordered = [name for name in unused if name != "pip"] + (["pip"] if "pip" in unused else [])
    subprocess.run([sys.executable, "-m", "pip", "uninstall", "--quiet", "--yes", *ordered], check=True)
    return unused


def remove_unused_files(site: Path) -> None:
    for service in (site / "botocore" / "data").iterdir():
        if service.is_dir() and service.name not in BOTOCORE_SERVICES:
            shutil.rmtree(service)
    for library in (site / "onnxruntime" / "capi").glob("libonnxruntime.so*"):
        library.unlink()
    for tests in [path for path in (site / "numpy").rglob("tests") if path.is_dir()]:
        shutil.rmtree(tests, ignore_errors=True)  # a suite inside one already removed is gone


def main() -> int:
    site = site_packages()
    removed = remove_unused_distributions()
    remove_unused_files(site)
    print(f"trim_venv: removed {', '.join(removed)}; botocore keeps {', '.join(sorted(BOTOCORE_SERVICES))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
