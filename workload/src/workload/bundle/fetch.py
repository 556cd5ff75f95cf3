"""Fetch a bundle: verified local copies of S3 bundles, cached by URI and version."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from workload import storage
from workload.bundle.format import MANIFEST, BundleError, parse_manifest, verify_folder


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "imdb-sentiment"


def fetch(model_uri: str, cache_dir: Path | None = None) -> tuple[Path, dict]:
    """A verified local copy of the bundle at `model_uri` and its manifest (S3 bundles go via the cache)."""
    if not storage.is_s3(model_uri):
        folder = Path(model_uri)
        return folder, verify_folder(folder)
    manifest_bytes = storage.read_bytes(storage.join(model_uri, MANIFEST))
    manifest = parse_manifest(manifest_bytes, model_uri)
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
