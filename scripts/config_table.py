"""Print the stack-configuration table of docs/configuration.md from the `config:` schema in Pulumi.yaml.

    python scripts/config_table.py            # paste the output into docs/configuration.md

`tests/test_repo.py` checks that docs/configuration.md holds exactly this output, so the table cannot drift
from the schema.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def render_default(spec: dict) -> str:
    if "default" not in spec:
        return "(required)"
    default = spec["default"]
    return f"`{default if isinstance(default, str) and default else json.dumps(default)}`"


def config_table(project_file: Path) -> str:
    schema = yaml.safe_load(project_file.read_text(encoding="utf-8")).get("config") or {}
    rows = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for key, spec in schema.items():
        # `<bucket>` would vanish as an HTML tag when the Markdown is rendered.
        description = " ".join(str(spec.get("description", "")).split()).replace("<", "&lt;")
        rows.append(f"| `{key}` | {spec.get('type', '')} | {render_default(spec)} | {description} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(config_table(REPO / "Pulumi.yaml"))
