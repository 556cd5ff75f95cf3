"""The model bundle: what `train` publishes and the API loads.

A bundle is a folder (local or an S3 prefix):
    weights.safetensors   tensors only (no pickle: loading a bundle can never run code)
    model.onnx            sequence models only: the network the API runs with ONNX Runtime (format 2 on)
    tokenizer.json        the `tokenizers` vocabulary and pipeline
    config.json           model config + training options (incl. the validation carve-out)
    metrics.json          training metrics
    baseline.json         optional: the validation split as the model saw it (workload.monitoring.baseline);
                          older bundles have none and still serve
    manifest.json         written last: version id, sha256 of every other file, data manifest hash, code and
                          library versions. A reader trusts only a bundle whose manifest verifies, exactly.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from workload import __version__, storage
from workload.errors import WorkloadError

if TYPE_CHECKING:  # torch is imported only when a bundle is written (by training)
    from workload.bundle.predictor import Predictor
    from workload.modeling.train import TrainedModel

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
TOKENIZER = "tokenizer.json"
CONFIG = "config.json"
METRICS = "metrics.json"
ONNX_MODEL = "model.onnx"
BASELINE = "baseline.json"
REQUIRED_FILES = (WEIGHTS, TOKENIZER, CONFIG, METRICS)
HISTORY = "history.json"  # per-epoch loss and accuracy, train and validation
REPORT = "report.html"  # the same as curves, self-contained
FORMAT = "imdb-sentiment-bundle/2"
# Format 1 differs only in having no model.onnx: its ngram bundles still load, its bilstm ones need retraining.
READABLE_FORMATS = (FORMAT, "imdb-sentiment-bundle/1")


class BundleError(WorkloadError):
    """A missing, incomplete or tampered bundle."""


def _library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("torch", "tokenizers", "safetensors", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


# Written into the package by the Dockerfile (build argument GIT_COMMIT); absent in a source checkout.
PACKAGED_COMMIT = Path(__file__).parent.parent / "GIT_COMMIT"


def code_version() -> dict[str, str | None]:
    """Package version plus the git commit: $GIT_COMMIT, else the commit packaged into the image's wheel, else
    `git rev-parse` when running from a checkout."""
    commit = os.environ.get("GIT_COMMIT") or None
    if commit is None and PACKAGED_COMMIT.is_file():
        commit = PACKAGED_COMMIT.read_text(encoding="utf-8").strip() or None
    if commit is None:
        try:
            result = subprocess.run(
                ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                cwd=Path(__file__).parent, check=False,
            )  # fmt: skip
            commit = result.stdout.strip() or None if result.returncode == 0 else None
        except (OSError, subprocess.TimeoutExpired):
            commit = None
    return {"package": __version__, "git_commit": commit}


def write_bundle(
    uri: str,
    *,
    trained: TrainedModel,
    data_manifest_sha256: str,
    data_uri: str,
    baseline: Callable[[Predictor], dict] | None = None,
) -> dict:
    """Write a trained model as a bundle exactly at `uri`; refuse to overwrite an existing one.

    `baseline`, if given, describes the model's validation split from a predictor over the staged files, exactly
    what the API will serve, and is written as baseline.json.

    Files are written to a staging folder first; the manifest is written (and uploaded) last. The refusal is
    `storage.publish_folder`'s, at publish time (so a bundle that appears meanwhile is not overwritten either)."""
    from safetensors.torch import save_file

    from workload.modeling.report import training_report

    with storage.staging_dir(uri) as staging:
        tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in trained.model.state_dict().items()}
        save_file(tensors, str(staging / WEIGHTS))
        names = (*REQUIRED_FILES, HISTORY, REPORT, *trained.model.export_for_serving(staging))
        trained.tokenizer.save(str(staging / TOKENIZER))
        _write_json(staging / CONFIG, {"model": trained.config.to_dict(), "training": trained.training})
        _write_json(staging / METRICS, trained.metrics)
        _write_json(staging / HISTORY, trained.metrics["history"])
        title = f"training: {trained.config.arch}, {len(trained.metrics['history'])} epochs"
        (staging / REPORT).write_text(training_report(trained.metrics["history"], title), encoding="utf-8")
        if baseline is not None:
            _write_json(staging / BASELINE, baseline(_staged_predictor(staging, trained)))
            names += (BASELINE,)
        for name in names:
            (staging / name).chmod(0o644)  # safetensors writes owner-only files; a bundle is read by others
        files = {name: storage.sha256_file(staging / name) for name in names}
        content_hash = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
        created = datetime.now(UTC)
        manifest = {
            "format": FORMAT,
            "version": f"{trained.config.arch}-{created:%Y%m%dT%H%M%SZ}-{content_hash[:8]}",
            "created_at": created.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "arch": trained.config.arch,
            "files": files,
            "data_manifest_sha256": data_manifest_sha256,
            "data_uri": data_uri,
            "validation_accuracy": trained.metrics.get("validation_accuracy"),
            "code_version": code_version(),
            "libraries": _library_versions(),
        }
        _write_json(staging / MANIFEST, manifest)
        storage.publish_folder(staging, uri, last=MANIFEST)
    return manifest


def _staged_predictor(staging: Path, trained: TrainedModel) -> Predictor:
    from workload.bundle.predictor import Predictor
    from workload.bundle.scorers import load_scorer

    config = {"model": trained.config.to_dict(), "training": trained.training}
    scorer = load_scorer(trained.config, staging)
    return Predictor(trained.config, trained.tokenizer, scorer, {"version": "unpublished"}, config)


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def parse_manifest(raw: bytes, where: str) -> dict:
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise BundleError(f"{MANIFEST} in {where} is not valid JSON") from exc
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") not in READABLE_FORMATS
        or not isinstance(manifest.get("files"), dict)
    ):
        raise BundleError(f"{MANIFEST} in {where} is not a {FORMAT} manifest")
    missing = [name for name in REQUIRED_FILES if name not in manifest["files"]]
    if missing or not isinstance(manifest.get("version"), str):
        raise BundleError(f"{MANIFEST} in {where} is incomplete (lists no {missing[0] if missing else 'version'})")
    return manifest


def verify_folder(folder: Path, where: str | None = None) -> dict:
    """Check a local bundle against its manifest exactly: no missing, altered or unlisted file. Returns it."""
    where = where or str(folder)
    try:
        raw = (folder / MANIFEST).read_bytes()
    except OSError as exc:
        raise BundleError(f"no model bundle at {where} (missing {MANIFEST})") from exc
    manifest = parse_manifest(raw, where)
    present = {name for name in storage.list_names(str(folder)) if name != MANIFEST}
    listed = set(manifest["files"])
    if listed - present:
        raise BundleError(f"bundle at {where} is incomplete: missing {sorted(listed - present)[0]}")
    if present - listed:
        raise BundleError(f"bundle at {where} has a file its manifest does not list: {sorted(present - listed)[0]}")
    for name, expected in manifest["files"].items():
        if storage.sha256_file(folder / name) != expected:
            raise BundleError(f"bundle at {where} was altered: {name} does not match its manifest sha256")
    return manifest
