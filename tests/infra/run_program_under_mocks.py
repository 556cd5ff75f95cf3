"""Run the whole Pulumi program (`__main__.py`) under the recording mocks with one stack file's config.

Usage: python tests/infra/run_program_under_mocks.py Pulumi.<stack>.yaml OUT.json

The Pulumi Python runtime keeps process-wide state, so each stack runs in its own process. Config is what the
CLI would hand the program: the stack file's values over the defaults declared in Pulumi.yaml. OUT.json gets
`{"stack": ..., "config": {...}, "resources": [...], "outputs": {...}, "calls": [...], "ignore_changes": {...}}`
with that effective config (as YAML values, not the engine's strings) and every resource's inputs and
fabricated state.
"""

from __future__ import annotations

import dataclasses
import json
import os
import runpy
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
# Every stack file in the repository: a new stack is checked as soon as its file exists.
STACKS = sorted(path.name.removeprefix("Pulumi.").removesuffix(".yaml") for path in REPO_ROOT.glob("Pulumi.*.yaml"))


class Program:
    """What one run of `__main__.py` registered, with lookups by type."""

    def __init__(self, result: dict[str, Any]) -> None:
        self.stack: str = result["stack"]
        # What the program was given: the stack file over the Pulumi.yaml defaults.
        self.config: dict[str, Any] = result["config"]
        self.resources: list[dict[str, Any]] = result["resources"]
        self.outputs: dict[str, Any] = result["outputs"]
        self.ignore_changes: dict[str, list[str]] = result["ignore_changes"]

    def of_type(self, typ: str) -> list[dict[str, Any]]:
        return [r for r in self.resources if r["type"] == typ]

    def one(self, typ: str) -> dict[str, Any]:
        found = self.of_type(typ)
        assert len(found) == 1, f"{self.stack}: expected one {typ}, got {[r['name'] for r in found]}"
        return found[0]

    def named(self, typ: str, name: str) -> dict[str, Any]:
        return next(r for r in self.of_type(typ) if r["name"] == name)

    def policy_documents(self) -> dict[str, dict[str, Any]]:
        documents = {}
        for typ, key in (
            ("aws:iam/rolePolicy:RolePolicy", "policy"),
            ("aws:iam/role:Role", "assumeRolePolicy"),
            ("aws:s3/bucketPolicy:BucketPolicy", "policy"),
        ):
            for resource in self.of_type(typ):
                documents[f"{resource['name']}.{key}"] = json.loads(resource["inputs"][key])
        return documents


def run_in_subprocess(stack: str, out_file: Path) -> Program:
    """Run the program for `Pulumi.<stack>.yaml` in a fresh interpreter (the Pulumi runtime's global state must not
    leak between stacks) and load what it registered."""
    completed = subprocess.run(
        [
            sys.executable,
            "-W",
            "ignore::DeprecationWarning",
            __file__,
            str(REPO_ROOT / f"Pulumi.{stack}.yaml"),
            str(out_file),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"the program failed for stack {stack}:\n{completed.stderr[-3000:]}")
    return Program(json.loads(out_file.read_text()))


def _config_string(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value)
    return str(value)


def effective_config(stack_file: Path) -> dict[str, Any]:
    """The stack file's `namespace:key` values over the Pulumi.yaml defaults, as YAML values, or SystemExit if a
    required key is missing."""
    project = yaml.safe_load((REPO_ROOT / "Pulumi.yaml").read_text())
    stack = yaml.safe_load(stack_file.read_text()).get("config", {})
    name = project["name"]
    config = {f"{name}:{key}": spec["default"] for key, spec in project["config"].items() if "default" in spec}
    config.update(stack)
    missing = [f"{name}:{key}" for key in project["config"] if f"{name}:{key}" not in config]
    if missing:
        raise SystemExit(f"{stack_file.name}: missing required configuration {missing}")
    return config


def stack_config(config: dict[str, Any]) -> dict[str, str]:
    """The flat `namespace:key` -> string map the Pulumi engine passes to a program."""
    return {key: _config_string(value) for key, value in config.items()}


def main(stack_file: Path, out_file: Path) -> None:
    config = effective_config(stack_file)
    # The runtime reads PULUMI_CONFIG when it is imported, as it does under `pulumi up`.
    os.environ["PULUMI_CONFIG"] = json.dumps(stack_config(config))
    sys.path[:0] = [str(REPO_ROOT), str(Path(__file__).resolve().parent)]
    os.chdir(REPO_ROOT)

    import pulumi
    from infra_mocks import RecordingMocks, record_resource_options

    mocks = RecordingMocks()
    stack_name = stack_file.name.removeprefix("Pulumi.").removesuffix(".yaml")
    pulumi.runtime.set_mocks(mocks, project="imdb-sentiment", stack=stack_name, preview=False)
    outputs: dict[str, Any] = {}
    options = record_resource_options()

    @pulumi.runtime.test
    def program() -> pulumi.Output[None]:
        runpy.run_path(str(REPO_ROOT / "__main__.py"), run_name="__main__")
        return pulumi.Output.all(**pulumi.runtime.get_root_resource().outputs).apply(outputs.update)

    program()
    result = {
        "stack": stack_name,
        "config": config,
        "resources": [dataclasses.asdict(resource) for resource in mocks.resources],
        "outputs": outputs,
        "calls": mocks.calls,
        "ignore_changes": {name: opts.ignore_changes for name, opts in options.items() if opts.ignore_changes},
    }
    out_file.write_text(json.dumps(result, indent=1, default=repr))


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]))
