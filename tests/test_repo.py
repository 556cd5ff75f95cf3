"""Repository checks: the CI entry point, the Makefile's install stamp, the workflows, and README facts."""

from __future__ import annotations

import ast
import contextlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
TOOLS = Path(sys.executable).parent
WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.yml"))
REQUIREMENT_FILES = ("requirements.txt", "requirements-dev.txt", "workload/pyproject.toml", "devtools/pyproject.toml")


def readme() -> str:
    return (REPO / "README.md").read_text(encoding="utf-8")


def readme_shell_commands() -> list[str]:
    """Every command line in the README's fenced shell blocks (comments and blank lines dropped)."""
    blocks = re.findall(r"```(?:bash|sh|shell|console)\n(.*?)```", readme(), flags=re.DOTALL)
    lines = (line.strip().removeprefix("$ ") for block in blocks for line in block.splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def fake_tool(folder: Path, name: str, exit_code: int = 0, output: str = "") -> Path:
    """A stand-in executable that appends its name and arguments to `calls.log`, prints `output` and exits."""
    folder.mkdir(parents=True, exist_ok=True)
    tool = folder / name
    script = f'#!/bin/sh\necho "{name} $*" >> "{folder / "calls.log"}"\n'
    tool.write_text(script + (f"echo {output}\n" if output else "") + f"exit {exit_code}\n")
    tool.chmod(0o755)
    return folder / "calls.log"


def workflow(name: str) -> dict:
    document = yaml.safe_load((REPO / ".github" / "workflows" / name).read_text())
    document["on"] = document.pop(True, document.get("on"))  # YAML 1.1 reads the bare key `on` as True
    return document


def steps_using(document: dict, action: str) -> list[tuple[str, dict]]:
    return [
        (job_name, step)
        for job_name, job in document["jobs"].items()
        for step in job.get("steps", [])
        if step.get("uses", "").startswith(f"{action}@")
    ]


# --- .ci/run and the README's test command ----------------------------------------------------------------


def test_readme_puts_the_two_commands_first() -> None:
    commands = readme_shell_commands()
    assert commands[:2] == ["make demo", "make test"]


@pytest.mark.parametrize("exit_code", [0, 1, 5])
def test_ci_run_calls_the_readme_test_command_and_keeps_its_exit_code(tmp_path: Path, exit_code: int) -> None:
    calls = fake_tool(tmp_path / "bin", "make", exit_code)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}

    result = subprocess.run([str(REPO / ".ci" / "run")], cwd=tmp_path, env=env, capture_output=True, text=True)

    readme_test_command = next(command for command in readme_shell_commands() if command.startswith("make test"))
    assert calls.read_text().splitlines() == [readme_test_command]
    # pytest's 5 ("no tests collected") must fail CI like any other failure.
    assert result.returncode == exit_code


# --- system packages for `make test` ---------------------------------------------------------------------


IMAGE_TOOLS = ("podman", "runc", "slirp4netns", "mmdebstrap")


def install_system_deps(bin_dir: Path, image_tools: tuple[str, ...] = IMAGE_TOOLS) -> subprocess.CompletedProcess[str]:
    """Run the installer with only the stand-ins in `bin_dir` on PATH (so the real Chromium is not found), with
    stand-ins for the image test's `image_tools` (all of them by default: only the browser is in question)."""
    for tool in image_tools:
        fake_tool(bin_dir, tool)
    script = REPO / "scripts" / "install-system-deps.sh"
    env = {"PATH": str(bin_dir), "HOME": str(bin_dir)}
    return subprocess.run(["/bin/bash", str(script)], env=env, capture_output=True, text=True)


def test_system_deps_installs_missing_chromium_with_apt_get_as_root(tmp_path: Path) -> None:
    calls = fake_tool(tmp_path, "id", output="0")
    fake_tool(tmp_path, "apt-get")
    fake_tool(tmp_path, "apt-cache")

    result = install_system_deps(tmp_path)

    assert result.returncode == 0, result.stderr
    apt_calls = [call for call in calls.read_text().splitlines() if call.startswith("apt-get")]
    assert apt_calls == ["apt-get update -qq", "apt-get install -y -qq --no-install-recommends chromium"]


def test_system_deps_warns_when_apt_has_no_chromium_package(tmp_path: Path) -> None:
    calls = fake_tool(tmp_path, "id", output="0")
    fake_tool(tmp_path, "apt-get")
    fake_tool(tmp_path, "apt-cache", exit_code=100)

    result = install_system_deps(tmp_path)

    assert result.returncode == 0
    assert "warning: no apt package 'chromium' here" in result.stderr
    assert [call for call in calls.read_text().splitlines() if call.startswith("apt-get")] == ["apt-get update -qq"]


@pytest.mark.parametrize("browser", ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"])
def test_system_deps_leaves_an_installed_browser_alone(tmp_path: Path, browser: str) -> None:
    calls = fake_tool(tmp_path, browser)
    fake_tool(tmp_path, "id", output="0")  # as root: only the browser being found keeps apt-get from running
    fake_tool(tmp_path, "apt-get")
    fake_tool(tmp_path, "apt-cache")

    result = install_system_deps(tmp_path)

    assert result.returncode == 0 and result.stderr == ""
    assert not calls.exists(), calls.read_text()  # no id, apt-cache or apt-get: nothing to install


def test_system_deps_installs_podman_with_runc_and_mmdebstrap_when_no_docker_daemon_answers(tmp_path: Path) -> None:
    calls = fake_tool(tmp_path, "chromium")
    fake_tool(tmp_path, "id", output="0")
    fake_tool(tmp_path, "apt-get")
    fake_tool(tmp_path, "apt-cache")
    fake_tool(tmp_path, "docker", exit_code=1)  # a client whose daemon does not answer

    result = install_system_deps(tmp_path, image_tools=())

    assert result.returncode == 0, result.stderr
    installs = [call for call in calls.read_text().splitlines() if call.startswith("apt-get install")]
    assert installs == ["apt-get install -y -qq --no-install-recommends podman runc slirp4netns mmdebstrap"]


def test_system_deps_needs_no_podman_when_docker_answers(tmp_path: Path) -> None:
    calls = fake_tool(tmp_path, "chromium")
    fake_tool(tmp_path, "id", output="0")
    fake_tool(tmp_path, "apt-get")
    fake_tool(tmp_path, "apt-cache")
    fake_tool(tmp_path, "docker")

    result = install_system_deps(tmp_path, image_tools=("mmdebstrap",))

    assert result.returncode == 0 and result.stderr == ""
    assert "apt-get" not in calls.read_text()


def test_system_deps_without_root_or_sudo_warns_and_lets_the_tests_skip(tmp_path: Path) -> None:
    calls = fake_tool(tmp_path, "id", output="1000")
    fake_tool(tmp_path, "apt-get")

    result = install_system_deps(tmp_path)

    assert result.returncode == 0
    assert "warning: missing system packages: chromium" in result.stderr
    assert "apt-get" not in calls.read_text()


# --- Makefile ---------------------------------------------------------------------------------------------


def test_make_installs_once_and_again_only_when_a_requirement_file_changes(tmp_path: Path) -> None:
    shutil.copy(REPO / "Makefile", tmp_path)
    for name in REQUIREMENT_FILES:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    calls = fake_tool(tmp_path / ".venv" / "bin", "pip")
    fake_tool(tmp_path / ".venv" / "bin", "python")

    def make_venv() -> list[str]:
        subprocess.run(["make", "--no-print-directory", "venv"], cwd=tmp_path, check=True, capture_output=True)
        return calls.read_text().splitlines() if calls.exists() else []

    first = make_venv()
    assert len(first) == 1
    assert "workload[serve,train,dev]" in first[0].split()
    assert make_venv() == first  # second run: nothing to do
    stamp_mtime = (tmp_path / ".venv" / ".installed").stat().st_mtime
    os.utime(tmp_path / "requirements-dev.txt", (stamp_mtime + 10, stamp_mtime + 10))  # newer: install again
    assert len(make_venv()) == 2


# --- GitHub workflows ---------------------------------------------------------------------------------------

ACTIONS = sorted((REPO / ".github" / "actions").glob("*/action.yml"))
STACK_ACTION = "./.github/actions/pulumi-stack"
CI_WORKFLOW = "./.github/workflows/ci.yml"


def check_schema(schema: str, *paths: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(TOOLS / "check-jsonschema"), "--builtin-schema", schema, *map(str, paths)],
        capture_output=True,
        text=True,
    )


def composite_action(path: str) -> dict:
    return yaml.safe_load((REPO / path / "action.yml").read_text())


def stack_jobs(document: dict) -> dict[str, dict]:
    """Each job that previews or updates a stack, with the inputs it gives the shared pulumi-stack action."""
    return {
        job_name: step["with"]
        for job_name, job in document["jobs"].items()
        for step in job.get("steps", [])
        if step.get("uses") == STACK_ACTION
    }


def test_workflows_and_actions_validate_against_github_schemas() -> None:
    assert [path.name for path in WORKFLOWS] == ["ci.yml", "deploy.yml", "promote.yml"]
    result = check_schema("vendor.github-workflows", *WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert [path.parent.name for path in ACTIONS] == ["pulumi-stack"]
    result = check_schema("vendor.github-actions", *ACTIONS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yml"
    broken.write_text("on: push\njobs:\n  test:\n    steps:\n      - run: make test\n")  # no runs-on
    assert check_schema("vendor.github-workflows", broken).returncode != 0


def test_every_action_is_pinned_to_a_version() -> None:
    steps = [
        step for path in WORKFLOWS for job in workflow(path.name)["jobs"].values() for step in job.get("steps", [])
    ]
    steps += [step for path in ACTIONS for step in yaml.safe_load(path.read_text())["runs"]["steps"]]
    uses = [step["uses"] for step in steps if "uses" in step and not step["uses"].startswith("./")]
    assert uses
    for action in uses:
        assert re.fullmatch(r"[\w.-]+/[\w.-]+@(v\d+(\.\d+){0,2}|[0-9a-f]{40})", action), action


def test_ci_runs_the_test_command_with_pip_caching_over_every_requirement_file() -> None:
    document = workflow("ci.yml")
    assert "workflow_call" in document["on"]  # the deploy workflow runs it first
    [(_, setup)] = steps_using(document, "actions/setup-python")
    assert setup["with"]["cache"] == "pip"
    assert set(setup["with"]["cache-dependency-path"].split()) == set(REQUIREMENT_FILES)
    runs = [step["run"] for job in document["jobs"].values() for step in job["steps"] if "run" in step]
    assert runs == [".ci/run"]


def test_deploy_previews_prs_updates_dev_on_main_and_gates_prod() -> None:
    document = workflow("deploy.yml")
    assert {"pull_request", "push", "workflow_dispatch"} <= set(document["on"])
    assert "v*" in document["on"]["push"]["tags"]
    stacks = stack_jobs(document)
    assert (stacks["preview-dev"]["command"], stacks["preview-dev"]["stack"]) == ("preview", "dev")
    assert stacks["preview-dev"]["comment-on-pr"] == "true"
    assert (stacks["up-dev"]["command"], stacks["up-dev"]["stack"]) == ("up", "dev")
    assert (stacks["up-prod"]["command"], stacks["up-prod"]["stack"]) == ("up", "prod")
    assert document["jobs"]["up-prod"]["environment"] == "production"
    # A manual dispatch may name any branch: prod must only take main's code that way.
    assert (
        "github.event_name == 'workflow_dispatch' && github.ref == 'refs/heads/main'"
        in document["jobs"]["up-prod"]["if"]
    )


def _upstream(jobs: dict[str, dict], job_name: str) -> set[str]:
    """Every job `job_name` waits for, directly or through other jobs."""
    needs = jobs[job_name].get("needs", [])
    direct = {needs} if isinstance(needs, str) else set(needs)
    return direct.union(*(_upstream(jobs, name) for name in direct))


def test_nothing_is_previewed_or_deployed_before_the_tests_pass() -> None:
    """Fault 7: every job that runs Pulumi, prod included, needs the job that runs the whole test suite (ci.yml),
    which always runs; and Pulumi runs only through the shared action, never in a job of its own."""
    jobs = workflow("deploy.yml")["jobs"]
    test_jobs = {name for name, job in jobs.items() if job.get("uses") == CI_WORKFLOW}
    assert len(test_jobs) == 1 and "if" not in jobs[next(iter(test_jobs))]
    pulumi_jobs = stack_jobs(workflow("deploy.yml"))
    assert {"preview-dev", "up-dev", "up-prod"} <= set(pulumi_jobs)
    for job_name in pulumi_jobs:
        assert test_jobs <= _upstream(jobs, job_name), f"{job_name} does not wait for the tests"
    assert not steps_using(workflow("deploy.yml"), "pulumi/actions"), "Pulumi outside the shared action"


def test_every_update_ends_with_the_deployment_check() -> None:
    """Fault 2: after `pulumi up`, the job fails unless ECS runs the task definition the update deployed."""
    steps = composite_action(STACK_ACTION)["runs"]["steps"]
    [pulumi_index] = [i for i, step in enumerate(steps) if step.get("uses", "").startswith("pulumi/actions@")]
    checks = [step for step in steps[pulumi_index + 1 :] if "scripts/check_deployment.py" in step.get("run", "")]
    assert [step["if"] for step in checks] == ["inputs.command == 'up'"]
    assert f"steps.{steps[pulumi_index]['id']}.outputs" in checks[0]["env"]["STACK_OUTPUTS"]


def test_promote_gates_then_proposes_the_stack_file_change_as_a_pull_request() -> None:
    document = workflow("promote.yml")
    assert set(document["on"]) == {"workflow_dispatch"}
    assert set(document["on"]["workflow_dispatch"]["inputs"]) == {"stack", "version"}
    [job] = document["jobs"].values()
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    # inputs reach the shell through the environment, never spliced into the script (no injection)
    assert 'models promote --stack "$STACK" -- "$VERSION"' in runs and "${{" not in runs
    names = [step.get("uses", "").split("@")[0] for step in job["steps"]]
    assert names.index("aws-actions/configure-aws-credentials") < names.index("peter-evans/create-pull-request")
    [(_, proposal)] = steps_using(document, "peter-evans/create-pull-request")
    assert proposal["with"]["body-path"] == "promotion.md"
    assert proposal["with"]["add-paths"] == "Pulumi.${{ inputs.stack }}.yaml"
    assert job["permissions"] == {"contents": "write", "pull-requests": "write", "id-token": "write"}


def test_aws_access_is_oidc_only() -> None:
    for path in [*WORKFLOWS, *ACTIONS]:
        assert "aws-access-key-id" not in path.read_text()
    steps = composite_action(STACK_ACTION)["runs"]["steps"]
    [credentials] = [s for s in steps if s.get("uses", "").startswith("aws-actions/configure-aws-credentials@")]
    assert credentials["with"]["role-to-assume"] == "${{ inputs.role-to-assume }}"
    document = workflow("deploy.yml")
    for job_name, inputs in stack_jobs(document).items():
        assert inputs["role-to-assume"].startswith("${{ vars.AWS_DEPLOY_ROLE_ARN_")
        assert document["jobs"][job_name]["permissions"]["id-token"] == "write"


# --- README facts -----------------------------------------------------------------------------------------


def module_constants(path: Path) -> dict[str, object]:
    """Top-level `NAME = <literal or tuple of earlier names>` assignments, read without importing (no pulumi)."""
    constants: dict[str, object] = {}
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = node.value
            if isinstance(value, ast.Tuple) and all(isinstance(item, ast.Name) for item in value.elts):
                constants[node.targets[0].id] = tuple(constants.get(item.id) for item in value.elts)  # type: ignore[attr-defined]
            else:
                with contextlib.suppress(ValueError):
                    constants[node.targets[0].id] = ast.literal_eval(value)
    return constants


def test_demo_bucket_layout_matches_the_storage_component() -> None:
    storage = module_constants(REPO / "components" / "storage.py")
    demo = module_constants(REPO / "scripts" / "demo.py")
    assert demo["PREFIXES"] == storage["PREFIXES"] == ("raw/", "processed/", "models/", "logs/", "capture/")


def test_config_table_is_generated_from_the_pulumi_yaml_schema() -> None:
    assert (REPO / "Pulumi.yaml").is_file()
    table = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "config_table.py")], capture_output=True, text=True, check=True
    ).stdout
    schema = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["config"]
    assert len(table.splitlines()) == 2 + len(schema)
    configuration = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    assert table in configuration, "docs/configuration.md's table is stale: paste in `python scripts/config_table.py`"
    assert "docs/configuration.md" in readme()


def test_readme_is_a_five_minute_read_whose_links_resolve() -> None:
    assert len(readme().splitlines()) <= 200
    links = re.findall(r"\]\(([^)#]+)\)", readme())
    local = [link for link in links if not re.match(r"https?://", link)]
    assert local, "the README points to its docs"
    assert [link for link in local if not (REPO / link).exists()] == []


def test_readme_names_no_path_outside_the_repository_except_as_an_option_value() -> None:
    """A reader's machine has no `../shared` or `/work`: such a path may only appear as an example value of a
    documented option (`IMDB_SOURCE=...`)."""
    outside = re.compile(r"(?<![\w.])(\.\./|~/|/(?:work|home|tmp|opt|root|Users)/)")
    lines = [line for line in readme().splitlines() if outside.search(line)]
    assert [line for line in lines if not re.search(r"\b[A-Z][A-Z_]+=\S*(\.\./|/)", line)] == []
