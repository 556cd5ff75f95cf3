"""Ingest the aclImdb corpus (official URL, local tarball or folder, or S3) into a processed data set.

The format is `workload.data.processed`'s. Only the splits found in the source are written; a source without
any labelled split is an error.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import random
import re
import tarfile
import tempfile
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import IO, TYPE_CHECKING

from workload import storage
from workload.data.processed import FORMAT, LABELS, MANIFEST, SPLITS, Review, count_labels, review_order, write_split
from workload.errors import WorkloadError
from workload.modeling.markup import strip_markup

if TYPE_CHECKING:
    from tqdm import tqdm

OFFICIAL_URL = "https://ai.stanford.edu/~amaas/data/sentiment/aclImdb_v1.tar.gz"
OFFICIAL_SHA256 = "c40f74a18d3b61f90feba1e17730e0d38e8b97c05fde7008942e91923d1658fe"
_FOLDER_LABELS = {"pos": "positive", "neg": "negative", "unsup": None}
# `train/pos/123_9.txt`, anywhere below the top folder; everything else in the tarball (vocab, bag-of-words
# features, URL lists) is ignored.
_MEMBER = re.compile(r"(?:^|/)(train|test)/(pos|neg|unsup)/(\d+)_(\d+)\.txt$")
_SPACES = re.compile(r"\s+")


def clean_text(raw: str) -> str:
    """Drop the HTML line breaks the reviews carry (as the encoder does) and normalise whitespace."""
    return _SPACES.sub(" ", strip_markup(raw)).strip()


def parse_member_name(name: str) -> tuple[str, str | None, int, int] | None:
    """`aclImdb/train/pos/12_9.txt` -> ("train", "positive", 12, 9); None for files that are not reviews."""
    match = _MEMBER.search(name)
    if match is None:
        return None
    split, folder, review_id, rating = match.groups()
    return ("unsup" if folder == "unsup" else split), _FOLDER_LABELS[folder], int(review_id), int(rating)


def _decode(raw: bytes, name: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise WorkloadError(f"{name} is not valid UTF-8") from exc


class _HashingReader(io.RawIOBase):
    """Hashes every byte read through it (so a tarball is checksummed in the same pass that parses it) and
    reports progress on a terminal."""

    def __init__(self, raw: IO[bytes], progress: tqdm) -> None:
        self._raw = raw
        self._progress = progress
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        chunk = self._raw.read(len(buffer))
        buffer[: len(chunk)] = chunk
        self.digest.update(chunk)
        self._progress.update(len(chunk))
        return len(chunk)

    def drain(self) -> str:
        while self.read(1 << 20):
            pass
        return self.digest.hexdigest()


def read_tarball(path: Path) -> tuple[dict[str, list[Review]], str]:
    """Stream a `.tar.gz` once (nothing is extracted to disk); return the reviews per split and its sha256."""
    from tqdm import tqdm

    splits: dict[str, list[Review]] = {}
    try:
        with (
            path.open("rb") as handle,
            tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc="read", disable=not _is_tty()) as bar,
        ):
            reader = _HashingReader(handle, bar)
            # gzip is decoded here rather than by tarfile ("r|gz"): tarfile's stream mode ends quietly when a cut
            # lands inside a member header, whereas GzipFile raises EOFError on a missing end-of-stream marker.
            decompressed = gzip.GzipFile(fileobj=reader, mode="rb")
            with tarfile.open(fileobj=decompressed, mode="r|") as tar:
                for member in tar:
                    parsed = parse_member_name(member.name) if member.isfile() else None
                    if parsed is None:
                        continue
                    extracted = tar.extractfile(member)
                    assert extracted is not None  # a regular file always has content
                    split, label, review_id, rating = parsed
                    text = clean_text(_decode(extracted.read(), member.name))
                    splits.setdefault(split, []).append(Review(review_id, rating, label, text))
            # Read past the end-of-archive blocks to the gzip trailer, so the CRC and a truncation are checked.
            while decompressed.read(1 << 20):
                pass
            digest = reader.drain()
    except FileNotFoundError as exc:
        raise WorkloadError(f"no such file: {path}") from exc
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
        raise WorkloadError(f"{path} is not a readable .tar.gz (corrupt or truncated): {exc}") from exc
    return splits, digest


def read_folder(path: Path) -> tuple[dict[str, list[Review]], str]:
    """Read an extracted `aclImdb/` folder (or its parent); the hash covers every review's path and bytes."""
    top = path / "aclImdb" if (path / "aclImdb").is_dir() else path
    splits: dict[str, list[Review]] = {}
    digest = hashlib.sha256()
    for file in sorted(top.glob("*/*/*.txt")):
        relative = file.relative_to(top).as_posix()
        parsed = parse_member_name(relative)
        if parsed is None:
            continue
        raw = file.read_bytes()
        digest.update(relative.encode() + b"\0" + hashlib.sha256(raw).digest())
        split, label, review_id, rating = parsed
        splits.setdefault(split, []).append(Review(review_id, rating, label, clean_text(_decode(raw, relative))))
    return splits, digest.hexdigest()


def _download(url: str, destination: Path) -> None:
    from tqdm import tqdm

    try:
        with urllib.request.urlopen(url, timeout=60) as response, destination.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="download", disable=not _is_tty()) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        raise WorkloadError(f"could not download {url}: {exc}") from exc


def _is_tty() -> bool:
    import sys

    return sys.stderr.isatty()


def read_source(source: str, workdir: Path) -> tuple[dict[str, list[Review]], str]:
    """Reviews per split and the source's sha256, for any supported source kind."""
    remote = source.startswith(("https://", "http://"))
    if remote or storage.is_s3(source):
        local = workdir / "source.tar.gz"
        _download(source, local) if remote else storage.download_file(source, local)
        return read_tarball(local)
    path = Path(source)
    if path.is_dir():
        return read_folder(path)
    if path.is_file():
        return read_tarball(path)
    raise WorkloadError(f"no such source: {source} (expected a URL, s3:// URI, .tar.gz or aclImdb/ folder)")


def check_splits(splits: dict[str, list[Review]], source: str) -> None:
    labelled = [name for name in ("train", "test") if name in splits]
    if not labelled:
        raise WorkloadError(f"no labelled reviews in {source}: expected aclImdb/train/{{pos,neg}} or test/{{pos,neg}}")
    for name in labelled:
        present = {review.label for review in splits[name]}
        missing = [label for label in LABELS if label not in present]
        if missing:
            raise WorkloadError(f"split {name!r} in {source} has no {missing[0]} reviews")


def sample_reviews(reviews: list[Review], per_label: int, seed: int = 0) -> list[Review]:
    """Keep `per_label` reviews of each label, chosen deterministically."""
    kept: list[Review] = []
    for label in sorted({review.label for review in reviews}, key=str):
        group = [review for review in reviews if review.label == label]
        kept.extend(random.Random(seed).sample(group, min(per_label, len(group))))
    return sorted(kept, key=review_order)


def ingest(source: str, output: str, *, sha256: str | None = None, sample: int | None = None) -> dict:
    """Parse everything first, then publish the processed set atomically (manifest last). Returns the manifest."""
    if source == OFFICIAL_URL and sha256 is None:
        sha256 = OFFICIAL_SHA256
    with tempfile.TemporaryDirectory(prefix="imdb-ingest-") as workdir:
        splits, digest = read_source(source, Path(workdir))
    if sha256 is not None and digest != sha256.lower():
        raise WorkloadError(f"checksum mismatch for {source}: expected sha256 {sha256}, got {digest}")
    check_splits(splits, source)
    # No timestamp: the same source and sample give the same manifest, so its sha256 (which every bundle records)
    # names the data, and the model gate can tell that two models were held out on the same split.
    manifest: dict = {
        "format": FORMAT,
        "source": source,
        "source_sha256": digest,
        "sample_per_label": sample,
        "splits": {},
    }
    with storage.staging_dir(output) as staging:
        for name in SPLITS:
            if name not in splits:
                continue
            reviews = sorted(splits[name], key=review_order)
            if sample is not None:
                reviews = sample_reviews(reviews, sample)
            file_name = f"{name}.jsonl.gz"
            write_split(staging / file_name, reviews)
            manifest["splits"][name] = {
                "file": file_name,
                "sha256": storage.sha256_file(staging / file_name),
                "n": len(reviews),
                "counts": count_labels(reviews),
            }
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
        storage.publish_folder(staging, output, last=MANIFEST, replace=True)
    return manifest
