"""Change `modelVersion` in a Pulumi stack file with a targeted line edit: every other line (comments, order,
quoting) stays byte for byte as it was, which a YAML round trip would not promise."""

from __future__ import annotations

import re
from pathlib import Path

from workload.errors import WorkloadError

# `  <project>:modelVersion: value  # comment` inside the `config:` mapping.
MODEL_VERSION_LINE = re.compile(
    r"^(?P<key>[ \t]+[\w-]+:modelVersion:[ \t]*)(?P<value>[^#\r\n]*?)(?P<rest>[ \t]*(#[^\r\n]*)?)$", re.MULTILINE
)


def stack_file(project_dir: Path, stack: str) -> Path:
    path = project_dir / f"Pulumi.{stack}.yaml"
    if not path.is_file():
        raise WorkloadError(f"no stack file {path} (is --project-dir the Pulumi project?)")
    return path


def read_model_version(path: Path) -> str:
    return _the_line(path.read_text(encoding="utf-8"), path)["value"].strip("'\"")


def write_model_version(path: Path, version: str) -> str:
    """Set `modelVersion` to `version` (a checked folder name: safe unquoted); returns the previous value."""
    text = path.read_text(encoding="utf-8")
    line = _the_line(text, path)
    edited = text[: line.start("value")] + version + text[line.end("value") :]
    path.write_text(edited, encoding="utf-8")
    return line["value"].strip("'\"")


def _the_line(text: str, path: Path) -> re.Match[str]:
    lines = list(MODEL_VERSION_LINE.finditer(text))
    if len(lines) != 1:
        raise WorkloadError(f"{path} must set modelVersion on exactly one line (found {len(lines)})")
    return lines[0]
