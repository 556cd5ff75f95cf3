"""The processed data set: its on-disk format, and reading it back.

Layout (a local folder or an S3 prefix):
    train.jsonl.gz / test.jsonl.gz / unsup.jsonl.gz   one JSON object a line: id, rating, label, text
    manifest.json                                       written last: counts per split and label, hashes
"""

from __future__ import annotations

import gzip
import hashlib
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from workload import storage
from workload.errors import WorkloadError

MANIFEST = "manifest.json"
FORMAT = "imdb-sentiment-processed/1"
SPLITS = ("train", "test", "unsup")
LABELS = ("positive", "negative")


class Review(NamedTuple):
    id: int
    rating: int
    label: str | None  # "positive" | "negative" | None (unsup)
    text: str


def review_order(review: Review) -> tuple[str, int]:
    return (review.label or "", review.id)


def write_split(path: Path, reviews: list[Review]) -> None:
    with path.open("wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
        for review in reviews:
            out.write(json.dumps(review._asdict(), ensure_ascii=False).encode("utf-8") + b"\n")


def count_labels(reviews: list[Review]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for review in reviews:
        key = review.label or "unlabelled"
        counts[key] = counts.get(key, 0) + 1
    return counts


@dataclass(frozen=True)
class ProcessedData:
    """A processed data set copied to (or found in) a local folder; read one split at a time."""

    folder: Path
    manifest: dict
    manifest_sha256: str
    uri: str

    def has_split(self, split: str) -> bool:
        return split in self.manifest["splits"]

    def reviews(self, split: str) -> list[Review]:
        entry = self.manifest["splits"].get(split)
        if entry is None:
            available = ", ".join(self.manifest["splits"]) or "none"
            raise WorkloadError(f"the data at {self.uri} has no {split!r} split (available: {available})")
        path = self.folder / entry["file"]
        if storage.is_s3(self.uri) and not path.exists():  # fetched on first use: train never needs unsup
            storage.download_file(storage.join(self.uri, entry["file"]), path)
        if storage.sha256_file(path) != entry["sha256"]:
            raise WorkloadError(f"{entry['file']} in {self.uri} does not match its manifest checksum")
        try:
            with gzip.open(path, "rt", encoding="utf-8") as lines:
                return [Review(**json.loads(line)) for line in lines]
        except (OSError, EOFError, ValueError, TypeError) as exc:
            raise WorkloadError(f"{entry['file']} in {self.uri} is unreadable: {exc}") from exc


@contextmanager
def open_processed(data_uri: str) -> Iterator[ProcessedData]:
    """Open a processed data set; an S3 one is read via a temporary folder that lives for the duration."""
    with tempfile.TemporaryDirectory(prefix="imdb-data-") as scratch:
        if storage.is_s3(data_uri):
            folder = Path(scratch)
            manifest_bytes = storage.read_bytes(storage.join(data_uri, MANIFEST))
            (folder / MANIFEST).write_bytes(manifest_bytes)
        else:
            folder = Path(data_uri)
            if not (folder / MANIFEST).is_file():
                raise WorkloadError(f"no processed data at {data_uri} (missing {MANIFEST}; run `ingest` first)")
            manifest_bytes = (folder / MANIFEST).read_bytes()
        try:
            manifest = json.loads(manifest_bytes)
        except ValueError as exc:
            raise WorkloadError(f"{MANIFEST} in {data_uri} is not valid JSON") from exc
        if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
            raise WorkloadError(f"{data_uri} is not a processed data set of format {FORMAT}")
        yield ProcessedData(folder, manifest, hashlib.sha256(manifest_bytes).hexdigest(), data_uri)


def blocked_folds(reviews: list[Review], n_folds: int) -> list[int]:
    """The fold (0..n_folds-1) of each review: per label, the reviews in id order cut into n_folds contiguous blocks.

    IMDB review ids run consecutively within a movie, so a random carve-out puts reviews of one movie on both
    sides and reads about a point high (0.92 random vs 0.90 blocked for the same model). Blocks of consecutive
    ids keep each movie on one side, except at the few block edges.
    """
    if n_folds < 2:
        raise WorkloadError(f"movie-blocked folds need at least 2 folds, got {n_folds}")
    folds = [0] * len(reviews)
    for label in LABELS:
        members = sorted((i for i, review in enumerate(reviews) if review.label == label), key=lambda i: reviews[i].id)
        for rank, index in enumerate(members):
            folds[index] = rank * n_folds // len(members)
    return folds


def split_validation(reviews: list[Review], fraction: float, seed: int) -> tuple[list[Review], list[Review]]:
    """Movie-blocked carve-out: of round(1 / fraction) blocked folds per label, fold `seed` modulo their number."""
    if not 0 < fraction < 1:
        raise WorkloadError(f"the validation fraction must be between 0 and 1, got {fraction}")
    n_folds = max(round(1 / fraction), 2)
    held_out = seed % n_folds
    folds = blocked_folds(reviews, n_folds)
    train = [review for review, fold in zip(reviews, folds, strict=True) if fold != held_out]
    validation = [review for review, fold in zip(reviews, folds, strict=True) if fold == held_out]
    return sorted(train, key=review_order), sorted(validation, key=review_order)
