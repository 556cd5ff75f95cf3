"""Bundle save/load/verify: round trip, tampering, missing and unlisted files, S3 + cache, no overwrite."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import boto3
import pytest
import torch
from workload.bundle import format as bundle_format
from workload.bundle.format import MANIFEST, BundleError, verify_folder, write_bundle
from workload.bundle.predictor import Prediction, Predictor, self_test
from workload.data.processed import open_processed
from workload.errors import WorkloadError
from workload.modeling.text import TextEncoder
from workload.modeling.train import TrainOptions, train

from workload import storage

POSITIVE = "The movie was amazing!"
NEGATIVE = "A dull, boring waste of two hours."


@pytest.fixture
def bundle_copy(tiny_bundle, tmp_path) -> Path:
    return Path(shutil.copytree(tiny_bundle, tmp_path / "bundle"))


def test_tiny_bundle_classifies_clear_reviews(tiny_bundle):
    predictor = Predictor.load(str(tiny_bundle))
    positive, negative = predictor.predict([POSITIVE, NEGATIVE])
    assert isinstance(positive, Prediction)
    assert positive.label == "positive" and positive.score > 0.5
    assert negative.label == "negative" and negative.score < 0.5
    assert predictor.predict([]) == []
    self_test(predictor)


def test_manifest_lists_every_file_with_versions(tiny_bundle):
    manifest = json.loads((tiny_bundle / MANIFEST).read_text())
    assert set(manifest["files"]) == {
        "weights.safetensors", "tokenizer.json", "config.json", "metrics.json", "baseline.json"
    }  # fmt: skip
    assert manifest["version"].startswith("ngram-")
    assert len(manifest["data_manifest_sha256"]) == 64
    assert manifest["code_version"]["package"] and "torch" in manifest["libraries"]
    assert Predictor.load(str(tiny_bundle)).version == manifest["version"]
    assert not list(tiny_bundle.glob("*.pt")) and not list(tiny_bundle.glob("*.pkl"))  # no pickle anywhere


def test_tampered_file_is_rejected(bundle_copy):
    with (bundle_copy / "config.json").open("a") as handle:
        handle.write(" ")
    with pytest.raises(BundleError, match=r"altered: config\.json") as caught:
        Predictor.load(str(bundle_copy))
    assert "\n" not in str(caught.value)


def test_missing_file_is_rejected(bundle_copy):
    (bundle_copy / "weights.safetensors").unlink()
    with pytest.raises(BundleError, match=r"missing weights\.safetensors"):
        Predictor.load(str(bundle_copy))


def test_unlisted_file_is_rejected(bundle_copy):
    (bundle_copy / "extra.bin").write_bytes(b"surprise")
    with pytest.raises(BundleError, match=r"does not list: extra\.bin"):
        verify_folder(bundle_copy)


@pytest.mark.parametrize("content", ["{not json", '{"format": "something-else"}'])
def test_bad_manifest_is_rejected(bundle_copy, content):
    (bundle_copy / MANIFEST).write_text(content)
    with pytest.raises(BundleError, match=MANIFEST):
        Predictor.load(str(bundle_copy))


def test_missing_bundle_is_a_clear_error(tmp_path):
    with pytest.raises(BundleError, match="no model bundle"):
        Predictor.load(str(tmp_path / "nothing"))


def test_predict_rejects_a_bare_string(tiny_bundle):
    with pytest.raises(Exception, match="sequence of strings"):
        Predictor.load(str(tiny_bundle)).predict("not a list")  # type: ignore[arg-type]


def test_train_refuses_to_overwrite_a_bundle(tiny_bundle, processed_data):
    with open_processed(str(processed_data)) as data:
        trained = train(data, TrainOptions(epochs=1, threads=1))
        with pytest.raises(WorkloadError, match="refusing to overwrite"):  # storage.publish_folder's refusal
            write_bundle(str(tiny_bundle), trained=trained, data_manifest_sha256="x", data_uri="y")


def upload_bundle(folder: Path, uri: str) -> None:
    for path in sorted(folder.iterdir(), key=lambda path: path.name == MANIFEST):  # manifest last
        storage.upload_file(path, storage.join(uri, path.name))


@pytest.mark.integration
def test_s3_bundle_is_cached_and_the_cache_is_reverified(tiny_bundle, s3_bucket, tmp_path):
    uri = f"s3://{s3_bucket}/models/tiny"
    upload_bundle(tiny_bundle, uri)
    cache = tmp_path / "cache"
    predictor = Predictor.load(uri, cache_dir=cache)
    assert predictor.predict([POSITIVE])[0].label == "positive"
    (cached,) = [path for path in cache.iterdir() if not path.name.startswith(".")]
    assert cached.name.endswith(predictor.version)
    (cached / "tokenizer.json").write_text("{}")  # a damaged cache entry is refetched, never trusted
    assert Predictor.load(uri, cache_dir=cache).predict([NEGATIVE])[0].label == "negative"
    assert json.loads((cached / "tokenizer.json").read_text()) != {}


@pytest.mark.integration
def test_s3_bundle_with_a_tampered_object_is_rejected(tiny_bundle, s3_bucket, tmp_path):
    uri = f"s3://{s3_bucket}/models/tampered"
    upload_bundle(tiny_bundle, uri)
    boto3.client("s3").put_object(Bucket=s3_bucket, Key="models/tampered/config.json", Body=b"{}")
    with pytest.raises(BundleError, match=r"altered: config\.json"):
        Predictor.load(uri, cache_dir=tmp_path / "cache")
    assert not [path for path in (tmp_path / "cache").iterdir() if not path.name.startswith(".")]


def test_bilstm_bundle_round_trips(processed_data, tmp_path):
    with open_processed(str(processed_data)) as data:
        trained = train(data, TrainOptions(arch="bilstm", epochs=1, threads=1))
        write_bundle(str(tmp_path / "lstm"), trained=trained, data_manifest_sha256="0" * 64, data_uri="local")
    predictor = Predictor.load(str(tmp_path / "lstm"))
    assert predictor.manifest["arch"] == "bilstm"
    texts = [POSITIVE, NEGATIVE, ""]
    trained.model.eval()
    batch = trained.model.featurize(TextEncoder(trained.tokenizer), texts)
    with torch.inference_mode():
        expected = torch.sigmoid(trained.model(*batch.all())).tolist()
    assert [prediction.score for prediction in predictor.predict(texts)] == pytest.approx(expected, abs=1e-6)


def test_code_version_prefers_the_commit_packaged_into_the_image(monkeypatch, tmp_path):
    monkeypatch.delenv("GIT_COMMIT", raising=False)
    packaged = tmp_path / "GIT_COMMIT"
    packaged.write_text("0123456789abcdef\n")
    monkeypatch.setattr(bundle_format, "PACKAGED_COMMIT", packaged)
    assert bundle_format.code_version()["git_commit"] == "0123456789abcdef"
    packaged.write_text("\n")  # built without the build argument: fall back to the checkout's commit
    assert bundle_format.code_version()["git_commit"] != "0123456789abcdef"
