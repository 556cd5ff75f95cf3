"""Ingest: parsing, cleaning, source kinds, partial splits, sampling, and the atomic failure paths."""

from __future__ import annotations

import functools
import gzip
import hashlib
import http.server
import io
import json
import tarfile
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from workload.data.ingest import clean_text, ingest, parse_member_name
from workload.data.processed import Review, blocked_folds, open_processed, split_validation
from workload.errors import WorkloadError
from workload_devtools.synthetic import write_aclimdb, write_aclimdb_tarball


def test_parse_member_name_reads_split_label_id_and_rating():
    assert parse_member_name("aclImdb/train/pos/12_9.txt") == ("train", "positive", 12, 9)
    assert parse_member_name("aclImdb/test/neg/7_2.txt") == ("test", "negative", 7, 2)
    assert parse_member_name("train/unsup/3_0.txt") == ("unsup", None, 3, 0)


@pytest.mark.parametrize(
    "name", ["aclImdb/imdb.vocab", "aclImdb/train/urls_pos.txt", "aclImdb/train/labeledBow.feat", "x/pos/1_2.txt"]
)
def test_parse_member_name_ignores_non_reviews(name):
    assert parse_member_name(name) is None


def test_clean_text_removes_html_breaks_and_normalises_space():
    assert clean_text("Great.<br /><br />Really<br/>great<BR>!  ") == "Great. Really great !"
    assert clean_text("Café über naïve") == "Café über naïve"


def read_split(folder: Path, split: str) -> list[dict]:
    with gzip.open(folder / f"{split}.jsonl.gz", "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def test_ingest_tarball_writes_every_split_and_a_manifest(synthetic_tarball, processed_data):
    manifest = json.loads((processed_data / "manifest.json").read_text())
    assert manifest["splits"]["train"]["counts"] == {"positive": 60, "negative": 60}
    assert manifest["splits"]["test"]["counts"] == {"positive": 30, "negative": 30}
    assert manifest["splits"]["unsup"]["counts"] == {"unlabelled": 10}
    assert manifest["source_sha256"] == hashlib.sha256(synthetic_tarball.read_bytes()).hexdigest()
    records = read_split(processed_data, "train")
    assert set(records[0]) == {"id", "rating", "label", "text"}
    assert all("<br" not in record["text"] for record in records)
    assert any("café" in record["text"] for record in records)  # UTF-8 survives
    assert {record["label"] for record in read_split(processed_data, "unsup")} == {None}


def test_ingest_folder_equals_tarball(tmp_path, processed_data):
    top = write_aclimdb(tmp_path / "extracted", n_train=60, n_test=30, n_unsup=10, seed=0)
    output = tmp_path / "out"
    ingest(str(top), str(output))
    for split in ("train", "test", "unsup"):
        assert read_split(output, split) == read_split(processed_data, split)


def test_ingest_accepts_a_source_with_train_and_unsup_only(tmp_path):
    tarball = write_aclimdb_tarball(tmp_path / "train_only.tar.gz", n_train=5, n_unsup=3, splits=("train",))
    manifest = ingest(str(tarball), str(tmp_path / "out"))
    assert sorted(manifest["splits"]) == ["train", "unsup"]
    with open_processed(str(tmp_path / "out")) as data:
        assert not data.has_split("test")
        with pytest.raises(WorkloadError, match="no 'test' split"):
            data.reviews("test")


def test_ingest_sample_keeps_n_per_split_and_label_deterministically(synthetic_tarball, tmp_path):
    first = ingest(str(synthetic_tarball), str(tmp_path / "a"), sample=4)
    ingest(str(synthetic_tarball), str(tmp_path / "b"), sample=4)
    assert first["splits"]["train"]["counts"] == {"positive": 4, "negative": 4}
    assert first["splits"]["test"]["counts"] == {"positive": 4, "negative": 4}
    assert read_split(tmp_path / "a", "train") == read_split(tmp_path / "b", "train")


def test_ingest_replaces_an_existing_output(synthetic_tarball, tmp_path):
    output = tmp_path / "out"
    ingest(str(synthetic_tarball), str(output), sample=2)
    ingest(str(synthetic_tarball), str(output), sample=3)
    assert json.loads((output / "manifest.json").read_text())["splits"]["train"]["n"] == 6
    assert sorted(path.name for path in tmp_path.iterdir()) == ["out"]


def assert_fails_cleanly(source: Path | str, tmp_path: Path, match: str, **options: object) -> None:
    output = tmp_path / "out"
    with pytest.raises(WorkloadError, match=match) as caught:
        ingest(str(source), str(output), **options)  # type: ignore[arg-type]
    assert "\n" not in str(caught.value)
    assert not output.exists()
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".out")], "staging left behind"


def test_corrupt_tarball_fails_and_leaves_nothing(tmp_path):
    corrupt = tmp_path / "corrupt.tar.gz"
    corrupt.write_bytes(b"this is not gzip data at all" * 100)
    assert_fails_cleanly(corrupt, tmp_path, "corrupt or truncated")


@pytest.mark.parametrize("kept", [0.1, 0.25, 0.5, 0.75, 0.9, 0.99])
def test_truncated_tarball_fails_and_leaves_nothing(synthetic_tarball, tmp_path, kept):
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(synthetic_tarball.read_bytes()[: int(synthetic_tarball.stat().st_size * kept)])
    assert_fails_cleanly(truncated, tmp_path, "corrupt or truncated")


def test_tarball_cut_inside_a_member_header_fails(tmp_path):
    """tarfile alone treats a short header after the first member as the end of the archive."""
    top = write_aclimdb(tmp_path / "src", n_train=3, n_test=0, n_unsup=0, splits=("train",))
    archive = io.BytesIO()
    with tarfile.open(fileobj=archive, mode="w") as tar:
        tar.add(top, arcname="aclImdb")
    with tarfile.open(fileobj=io.BytesIO(archive.getvalue())) as written:
        last_member = written.getmembers()[-1]
    cut = last_member.offset + 100  # 100 bytes into the last member's 512-byte header
    # A gzip stream that decodes to exactly the first `cut` bytes and then stops, with no end-of-stream marker.
    compressor = zlib.compressobj(wbits=31)
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(compressor.compress(archive.getvalue()[:cut]) + compressor.flush(zlib.Z_SYNC_FLUSH))
    assert_fails_cleanly(truncated, tmp_path, "corrupt or truncated")


def test_checksum_mismatch_fails_and_leaves_nothing(synthetic_tarball, tmp_path):
    assert_fails_cleanly(synthetic_tarball, tmp_path, "checksum mismatch", sha256="0" * 64)


def test_source_without_labelled_splits_fails(tmp_path):
    tarball = tmp_path / "empty.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        readme = tmp_path / "README"
        readme.write_text("no reviews here")
        tar.add(readme, arcname="aclImdb/README")
    assert_fails_cleanly(tarball, tmp_path, "no labelled reviews")


def test_split_missing_a_label_fails(tmp_path):
    top = write_aclimdb(tmp_path / "src", n_train=3, n_test=0, n_unsup=0, splits=("train",))
    for file in (top / "train" / "neg").iterdir():
        file.unlink()
    assert_fails_cleanly(top, tmp_path, "has no negative reviews")


def test_missing_source_fails(tmp_path):
    assert_fails_cleanly(tmp_path / "nope.tar.gz", tmp_path, "no such source")


def test_tampered_processed_split_is_rejected(synthetic_tarball, tmp_path):
    output = tmp_path / "out"
    ingest(str(synthetic_tarball), str(output), sample=2)
    with gzip.open(output / "train.jsonl.gz", "wt") as handle:
        handle.write("{}\n")
    with open_processed(str(output)) as data, pytest.raises(WorkloadError, match="checksum"):
        data.reviews("train")


def test_open_processed_without_manifest_is_a_clear_error(tmp_path):
    with pytest.raises(WorkloadError, match="run `ingest` first"), open_processed(str(tmp_path)):
        pass


def reviews(n_per_label: int) -> list[Review]:
    return [Review(i, 8, "positive", f"p{i}") for i in range(n_per_label)] + [
        Review(i, 2, "negative", f"n{i}") for i in range(n_per_label)
    ]


def test_validation_split_is_deterministic_stratified_and_disjoint():
    train, validation = split_validation(reviews(50), 0.1, seed=0)
    again = split_validation(list(reversed(reviews(50))), 0.1, seed=0)
    assert (train, validation) == again
    assert sum(review.label == "positive" for review in validation) == 5
    assert sum(review.label == "negative" for review in validation) == 5
    assert not set(train) & set(validation) and len(train) + len(validation) == 100
    assert split_validation(reviews(50), 0.1, seed=1)[1] != validation


@pytest.mark.parametrize("seed", range(10))
def test_validation_split_keeps_each_id_block_on_one_side(seed):
    """Consecutive ids are one movie's reviews: per label, validation is one contiguous id range that no train id
    falls inside, so no block of consecutive ids straddles the split."""
    train, validation = split_validation(reviews(50), 0.1, seed=seed)
    for label in ("positive", "negative"):
        held = [review.id for review in validation if review.label == label]
        assert held == list(range(min(held), max(held) + 1))
        assert not [review.id for review in train if review.label == label and min(held) <= review.id <= max(held)]


def test_blocked_folds_cover_every_review_in_contiguous_blocks():
    shuffled = reviews(23)[::-1]
    folds = blocked_folds(shuffled, 5)
    for label in ("positive", "negative"):
        by_id = sorted((review.id, fold) for review, fold in zip(shuffled, folds, strict=True) if review.label == label)
        assert [fold for _, fold in by_id] == sorted(fold for _, fold in by_id)  # folds follow id order
        assert {fold for _, fold in by_id} == set(range(5))


@pytest.mark.parametrize(("fraction", "message"), [(0.0, "between 0 and 1"), (1.5, "between 0 and 1")])
def test_validation_split_rejects_a_bad_fraction(fraction, message):
    with pytest.raises(WorkloadError, match=message):
        split_validation(reviews(5), fraction, seed=0)


@pytest.fixture
def tarball_url(synthetic_tarball: Path) -> Iterator[str]:
    """The synthetic tarball served over HTTP on 127.0.0.1, as the official URL would serve the real one."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(synthetic_tarball.parent))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined] # keep pytest's output clean
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/{synthetic_tarball.name}"
    finally:
        server.shutdown()
        server.server_close()


def test_ingest_downloads_an_http_source_and_checks_its_sha256(synthetic_tarball, tarball_url, tmp_path):
    expected = hashlib.sha256(synthetic_tarball.read_bytes()).hexdigest()
    manifest = ingest(tarball_url, str(tmp_path / "out"), sha256=expected)
    assert manifest["source_sha256"] == expected
    assert manifest["splits"]["train"]["n"] > 0


def test_http_source_with_the_wrong_sha256_fails_and_leaves_nothing(tarball_url, tmp_path):
    assert_fails_cleanly(tarball_url, tmp_path, "checksum mismatch", sha256="0" * 64)


def test_http_source_that_is_not_there_is_a_clear_error(tarball_url, tmp_path):
    assert_fails_cleanly(tarball_url.replace(".tar.gz", "-missing.tar.gz"), tmp_path, "could not download")
