"""The model bundle: what `train` publishes and the API loads.

A bundle is a folder (local or an S3 prefix):
    weights.safetensors   tensors only (no pickle: loading a bundle can never run code)
    tokenizer.json        the `tokenizers` vocabulary and pipeline
    config.json           model config + training options (incl. the validation carve-out)
    metrics.json          training metrics
    manifest.json         written last: version id, sha256 of every other file, data manifest hash, code and
                          library versions. A reader trusts only a bundle whose manifest verifies, exactly.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from workload import __version__, storage
from workload.errors import WorkloadError, first_line

if TYPE_CHECKING:  # torch and tokenizers are imported only when a bundle is written or loaded
    from tokenizers import Tokenizer

    from workload.model import SentimentModel
    from workload.train import TrainedModel

MANIFEST = "manifest.json"
WEIGHTS = "weights.safetensors"
TOKENIZER = "tokenizer.json"
CONFIG = "config.json"
METRICS = "metrics.json"
REQUIRED_FILES = (WEIGHTS, TOKENIZER, CONFIG, METRICS)
FORMAT = "imdb-sentiment-bundle/1"
SELF_TEST_TEXTS = ("The movie was amazing!", "A dull, boring waste of two hours.")
_PREDICT_CHUNK = 512  # bounds memory for long lists; one chunk is still a single vectorised pass


class BundleError(WorkloadError):
    """A missing, incomplete or tampered bundle."""


class Prediction(NamedTuple):
    label: str  # "positive" | "negative"
    score: float  # P(positive)


def _library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in ("torch", "tokenizers", "safetensors", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "unknown"
    return versions


# Written into the package by the Dockerfile (build argument GIT_COMMIT); absent in a source checkout.
PACKAGED_COMMIT = Path(__file__).with_name("GIT_COMMIT")


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


def write_bundle(uri: str, *, trained: TrainedModel, data_manifest_sha256: str, data_uri: str) -> dict:
    """Write a trained model as a bundle exactly at `uri`; refuse to overwrite an existing one.

    Files are written to a staging folder first; the manifest is written (and uploaded) last. The refusal is
    `storage.publish_folder`'s, at publish time (so a bundle that appears meanwhile is not overwritten either)."""
    from safetensors.torch import save_file

    with storage.staging_dir(uri) as staging:
        tensors = {name: tensor.detach().cpu().contiguous() for name, tensor in trained.model.state_dict().items()}
        save_file(tensors, str(staging / WEIGHTS))
        trained.tokenizer.save(str(staging / TOKENIZER))
        _write_json(staging / CONFIG, {"model": trained.config.to_dict(), "training": trained.training})
        _write_json(staging / METRICS, trained.metrics)
        for name in REQUIRED_FILES:
            (staging / name).chmod(0o644)  # safetensors writes owner-only files; a bundle is read by others
        files = {name: storage.sha256_file(staging / name) for name in REQUIRED_FILES}
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


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _parse_manifest(raw: bytes, where: str) -> dict:
    try:
        manifest = json.loads(raw)
    except ValueError as exc:
        raise BundleError(f"{MANIFEST} in {where} is not valid JSON") from exc
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
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
    manifest = _parse_manifest(raw, where)
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


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imdb-sentiment"


def fetch(model_uri: str, cache_dir: Path | None = None) -> tuple[Path, dict]:
    """A verified local copy of the bundle at `model_uri` and its manifest (S3 bundles go via the cache)."""
    if not storage.is_s3(model_uri):
        folder = Path(model_uri)
        return folder, verify_folder(folder)
    manifest_bytes = storage.read_bytes(storage.join(model_uri, MANIFEST))
    manifest = _parse_manifest(manifest_bytes, model_uri)
    remote = set(storage.list_names(model_uri)) - {MANIFEST}
    if remote - set(manifest["files"]):
        unlisted = sorted(remote - set(manifest["files"]))[0]
        raise BundleError(f"bundle at {model_uri} has a file its manifest does not list: {unlisted}")
    cache = cache_dir or default_cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    uri_key = hashlib.sha256(model_uri.encode()).hexdigest()[:16]
    target = cache / f"{uri_key}-{manifest['version']}"
    if target.is_dir():
        try:
            return target, verify_folder(target, model_uri)
        except BundleError:
            shutil.rmtree(target, ignore_errors=True)  # a damaged cache entry is refetched, never trusted
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=cache))
    try:
        for name in manifest["files"]:
            storage.download_file(storage.join(model_uri, name), staging / name)
        (staging / MANIFEST).write_bytes(manifest_bytes)
        verified = verify_folder(staging, model_uri)
        try:
            staging.rename(target)
            return target, verified
        except OSError:  # another process (e.g. a sibling API worker) published the same version first
            pass
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target, verify_folder(target, model_uri)


class Predictor:
    """A loaded, verified bundle ready to score reviews on CPU."""

    def __init__(self, model: SentimentModel, tokenizer: Tokenizer, manifest: dict, config: dict) -> None:
        from workload.text import TextEncoder

        self.model = model
        self.encoder = TextEncoder(tokenizer)
        self.manifest = manifest
        self.config = config
        self.version: str = manifest["version"]
        self._score = model.inference_scorer()

    @classmethod
    def load(cls, model_uri: str, cache_dir: Path | None = None) -> Predictor:
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        from workload.model import ModelConfig, build_model

        folder, manifest = fetch(model_uri, cache_dir)
        try:
            config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
            model_config = ModelConfig.from_dict(config["model"])
            tokenizer = Tokenizer.from_file(str(folder / TOKENIZER))
            model = build_model(model_config)
            model.load_state_dict(load_file(str(folder / WEIGHTS)), strict=True)
        except Exception as exc:  # any failure here means a bad bundle: say so in one line, never half-load
            raise BundleError(f"bundle at {model_uri} cannot be loaded: {first_line(exc)}") from exc
        model.eval()
        return cls(model, tokenizer, manifest, config)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise WorkloadError("predict expects a sequence of strings")
        predictions: list[Prediction] = []
        for start in range(0, len(texts), _PREDICT_CHUNK):
            batch = self.model.featurize(self.encoder, texts[start : start + _PREDICT_CHUNK])
            scores = self._score(batch).tolist()
            predictions.extend(Prediction("positive" if s >= 0.5 else "negative", s) for s in scores)
        return predictions


def self_test(predictor: Predictor) -> None:
    """Readiness check (the API's): every self-test text gets a valid label and a finite score in [0, 1].

    Raises BundleError if not. Takes anything with `predict` and `version`, so the API's tests can feed it fakes.
    """
    predictions = predictor.predict(list(SELF_TEST_TEXTS))
    if len(predictions) != len(SELF_TEST_TEXTS):
        expected = len(SELF_TEST_TEXTS)
        raise BundleError(f"model {predictor.version} self-test returned {len(predictions)} predictions for {expected}")
    for prediction in predictions:
        if prediction.label not in ("positive", "negative") or not (
            math.isfinite(prediction.score) and 0.0 <= prediction.score <= 1.0
        ):
            raise BundleError(f"model {predictor.version} self-test returned an invalid prediction: {prediction!r}")
