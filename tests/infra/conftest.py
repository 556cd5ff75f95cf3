"""Fixtures for the Pulumi unit tests: fresh recording mocks per test and a runner that resolves outputs."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pulumi
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
# importlib import mode puts nothing on sys.path: make the Pulumi program's `components` package and the shared
# mocks importable.
for path in (REPO_ROOT, Path(__file__).resolve().parent):
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from infra_mocks import RecordingMocks, record_resource_options  # noqa: E402
from run_program_under_mocks import STACKS, Program, run_in_subprocess  # noqa: E402


def pytest_configure(config: pytest.Config) -> None:
    # pulumi_aws warns about its own deprecated *V2 aliases when its modules load; we never use them.
    config.addinivalue_line("filterwarnings", "ignore::DeprecationWarning:pulumi_aws.*")


RunPulumi = Callable[[Callable[[], dict[str, Any]]], dict[str, Any]]


@pytest.fixture(scope="session", params=STACKS)
def program(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Program:
    """The whole program (`__main__.py`) run under the mocks with one stack file, once per test session."""
    return run_in_subprocess(request.param, tmp_path_factory.mktemp(request.param) / "program.json")


@pytest.fixture
def pulumi_mocks() -> RecordingMocks:
    mocks = RecordingMocks()
    pulumi.runtime.set_mocks(mocks, project="imdb-sentiment", stack="test", preview=False)
    return mocks


@pytest.fixture
def resource_options(pulumi_mocks: RecordingMocks) -> dict[str, pulumi.ResourceOptions]:
    """Each resource's options by name (the mocks never see options such as ignore_changes)."""
    return record_resource_options()


@pytest.fixture
def run_pulumi(pulumi_mocks: RecordingMocks) -> RunPulumi:
    """Run `build` as a Pulumi program under the mocks; return its dict of outputs, resolved.

    Every registration has finished when this returns, so `pulumi_mocks.resources` is complete. A key missing from
    the result means its output never resolved, which fails the test instead of skipping an assertion.
    """

    def run(build: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        resolved: dict[str, Any] = {}

        @pulumi.runtime.test
        def program() -> pulumi.Output[None]:
            return pulumi.Output.all(**build()).apply(resolved.update)

        program()
        return resolved

    return run


@pytest.fixture(scope="session")
def parliament_findings() -> Callable[[dict[str, Any]], list[str]]:
    """Lint one IAM policy document with parliament; return its findings as readable strings."""
    import json
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # parliament imports the deprecated pkg_resources
        import parliament

    def findings(document: dict[str, Any]) -> list[str]:
        policy = parliament.analyze_policy_string(json.dumps(document))
        return [f"{finding.issue}: {finding.detail}" for finding in policy.findings]

    return findings


@pytest.fixture(scope="session")
def shell_check() -> Callable[[str], None]:
    """Assert a bash script parses (`bash -n`) and is shellcheck-clean."""
    import shutil
    import subprocess

    shellcheck = shutil.which("shellcheck") or str(Path(sys.executable).parent / "shellcheck")

    def check(script: str) -> None:
        for command in (["bash", "-n"], [shellcheck, "--shell=bash", "--severity=style", "-"]):
            result = subprocess.run(command, input=script, capture_output=True, text=True, timeout=60)
            assert result.returncode == 0, f"{command[0]} rejected the script:\n{result.stdout}{result.stderr}"

    return check
