"""Read the registry: the bundles under a models URI and what is recorded next to them. Manifests and small JSON
files only: listing never imports torch or downloads weights."""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import asdict, dataclass
from typing import Any

from workload import storage
from workload.bundle.format import MANIFEST, METRICS, BundleError, parse_manifest
from workload.errors import WorkloadError

log = logging.getLogger(__name__)

MODELS_URI_VARIABLE = "MODELS_URI"
EVALUATION_SUFFIX = ".evaluation.json"
GATE_SUFFIX = ".gate.json"
# What `modelVersion` may name: one folder under models/ (also safe to write unquoted into a stack file).
VERSION_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


@dataclass(frozen=True)
class ModelRecord:
    version: str  # the folder under models/: what a stack's `modelVersion` names
    uri: str
    bundle_id: str  # the manifest's own version id (architecture, time, content hash)
    created_at: str
    arch: str
    data_manifest_sha256: str
    data_uri: str  # the processed data it was trained on
    git_commit: str | None
    accuracy: float | None
    split: str | None  # the split `accuracy` was measured on
    n: int | None
    size_bytes: int
    gate: str | None  # "passed" | "failed" | None (never gated)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolve_models_uri(models_uri: str | None) -> str:
    resolved = models_uri or os.environ.get(MODELS_URI_VARIABLE)
    if not resolved:
        raise WorkloadError(f"no models URI: pass --models-uri or set {MODELS_URI_VARIABLE} (e.g. s3://bucket/models)")
    return resolved


def check_version(version: str) -> str:
    if not VERSION_PATTERN.fullmatch(version):
        raise WorkloadError(f"not a model version: {version!r} (a folder name under models/: letters, digits, . _ -)")
    return version


def sidecar_uri(bundle_uri: str, suffix: str) -> str:
    """`models/<version><suffix>`: beside the bundle folder, so the bundle's own manifest never has to list it."""
    return bundle_uri.rstrip("/") + suffix


def read_json(uri: str) -> dict[str, Any] | None:
    """A registry JSON file, or None if it is absent or unreadable (a record must never break a listing)."""
    try:
        value = json.loads(storage.read_bytes(uri))
    except (WorkloadError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_json(uri: str, value: dict[str, Any]) -> None:
    storage.write_bytes(uri, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def list_models(models_uri: str) -> list[ModelRecord]:
    """Every bundle directly under `models_uri`, newest first. A bundle whose manifest is broken is skipped with
    a warning (it can never be served: readers verify the manifest)."""
    sizes = storage.list_sizes(models_uri)
    versions = sorted(name.split("/")[0] for name in sizes if name.count("/") == 1 and name.endswith(f"/{MANIFEST}"))
    records = []
    for version in versions:
        try:
            records.append(_record(models_uri, version, sizes))
        except BundleError as error:
            log.warning("skipping %s: %s", version, error)
    return sorted(records, key=lambda record: (record.created_at, record.version), reverse=True)


def find_model(models_uri: str, version: str) -> ModelRecord:
    """One bundle by its folder name (what `modelVersion` names) or by its manifest's version id."""
    for record in list_models(models_uri):
        if version in (record.version, record.bundle_id):
            return record
    raise WorkloadError(f"no model {version!r} under {models_uri} (see `python -m workload models list`)")


def _record(models_uri: str, version: str, sizes: dict[str, int]) -> ModelRecord:
    uri = storage.join(models_uri, version)
    manifest = parse_manifest(storage.read_bytes(storage.join(uri, MANIFEST)), uri)
    evaluation = read_json(sidecar_uri(uri, EVALUATION_SUFFIX)) if f"{version}{EVALUATION_SUFFIX}" in sizes else None
    gate = read_json(sidecar_uri(uri, GATE_SUFFIX)) if f"{version}{GATE_SUFFIX}" in sizes else None
    if evaluation is not None:
        accuracy, split, n = evaluation.get("accuracy"), evaluation.get("split"), evaluation.get("n")
    else:  # no evaluation recorded yet: training's own figure, on its validation carve-out
        metrics = read_json(storage.join(uri, METRICS)) or {}
        accuracy, split, n = manifest.get("validation_accuracy"), "validation", metrics.get("n_validation")
    return ModelRecord(
        version=version,
        uri=uri,
        bundle_id=manifest["version"],
        created_at=str(manifest.get("created_at", "")),
        arch=str(manifest.get("arch", "")),
        data_manifest_sha256=str(manifest.get("data_manifest_sha256", "")),
        data_uri=str(manifest.get("data_uri", "")),
        git_commit=(manifest.get("code_version") or {}).get("git_commit"),
        accuracy=accuracy,
        split=split,
        n=n,
        size_bytes=sum(size for name, size in sizes.items() if name.startswith(f"{version}/")),
        gate=None if gate is None else ("passed" if gate.get("passed") is True else "failed"),
    )


def format_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB"):
        if value < 1000:
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    return f"{value:.1f} GB"


def format_table(records: list[ModelRecord]) -> str:
    header = ("VERSION", "CREATED", "ARCH", "DATA", "COMMIT", "ACCURACY", "SPLIT", "N", "SIZE", "GATE")
    rows = [header] + [
        (
            record.version,
            record.created_at,
            record.arch,
            record.data_manifest_sha256[:12],
            (record.git_commit or "-")[:8],
            "-" if record.accuracy is None else f"{record.accuracy:.4f}",
            record.split or "-",
            "-" if record.n is None else str(record.n),
            format_size(record.size_bytes),
            record.gate or "-",
        )
        for record in records
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(header))]
    lines = ("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)) for row in rows)
    return "\n".join(line.rstrip() for line in lines)
