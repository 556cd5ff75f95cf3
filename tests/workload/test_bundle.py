"""Bundle save/load/verify: round trip, tampering, missing and unlisted files, S3 + cache, no overwrite."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import boto3
import numpy as np
import pytest
import torch
from safetensors.numpy import load_file, save_file
from workload.bundle import format as bundle_format
from workload.bundle.format import MANIFEST, BundleError, verify_folder, write_bundle
from workload.bundle.predictor import Prediction, Predictor, self_test
from workload.data.processed import open_processed
from workload.errors import WorkloadError
from workload.modeling.features import featurize
from workload.modeling.text import TextEncoder
from workload.modeling.train import TrainOptions, train
from workload_devtools.synthetic import synthetic_review

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
        "weights.safetensors",
        "tokenizer.json",
        "config.json",
        "metrics.json",
        "baseline.json",
        "history.json",
        "report.html",
    }
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


def test_bilstm_bundle_lists_its_onnx_model(bilstm_bundle):
    folder, _ = bilstm_bundle
    manifest = json.loads((folder / MANIFEST).read_text())
    assert manifest["arch"] == "bilstm" and "model.onnx" in manifest["files"]
    assert manifest["format"] == bundle_format.FORMAT


def test_onnx_runtime_scores_match_torch(bilstm_bundle):
    """The API runs bilstm with ONNX Runtime: its scores must equal the trained torch model's, review by review."""
    folder, trained = bilstm_bundle
    rng = random.Random(7)
    lengths = [rng.choice([0, 1, 5, 40, 120, 400]) for _ in range(300)]  # empty, short and truncated reviews
    texts = [synthetic_review(rng, rng.choice(["pos", "neg"]), n_words) for n_words in lengths]
    trained.model.eval()
    batch = featurize(trained.config, TextEncoder(trained.tokenizer), texts)
    with torch.inference_mode():
        expected = torch.sigmoid(trained.model(*map(torch.from_numpy, batch.all()))).numpy()
    scores = np.array([prediction.score for prediction in Predictor.load(str(folder)).predict(texts)])
    np.testing.assert_allclose(scores, expected, rtol=0, atol=1e-5)


def test_bilstm_bundle_without_its_onnx_model_is_rejected(bilstm_bundle, tmp_path):
    """A format-1 bilstm bundle (weights only) cannot be served without torch: one clear line, not a crash."""
    folder = Path(shutil.copytree(bilstm_bundle[0], tmp_path / "old"))
    (folder / "model.onnx").unlink()
    manifest = json.loads((folder / MANIFEST).read_text())
    del manifest["files"]["model.onnx"]
    (folder / MANIFEST).write_text(json.dumps({**manifest, "format": "imdb-sentiment-bundle/1"}))
    with pytest.raises(BundleError, match=r"no model\.onnx") as caught:
        Predictor.load(str(folder))
    assert "\n" not in str(caught.value)


def test_format_1_ngram_bundle_still_loads(bundle_copy):
    manifest = json.loads((bundle_copy / MANIFEST).read_text())
    (bundle_copy / MANIFEST).write_text(json.dumps({**manifest, "format": "imdb-sentiment-bundle/1"}))
    assert Predictor.load(str(bundle_copy)).predict([POSITIVE])[0].label == "positive"


def rehash(folder: Path, name: str) -> None:
    """Update the manifest for a changed file, as someone tampering on purpose would."""
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["files"][name] = storage.sha256_file(folder / name)
    (folder / MANIFEST).write_text(json.dumps(manifest))


def test_bundle_with_a_non_finite_weight_is_rejected(bundle_copy):
    weights_path = bundle_copy / "weights.safetensors"
    weights = load_file(str(weights_path))
    weights["weight"][3, 0] = np.nan  # one word's weight
    save_file(weights, str(weights_path))
    rehash(bundle_copy, "weights.safetensors")
    verify_folder(bundle_copy)  # the manifest matches: only loading can catch it
    with pytest.raises(BundleError, match=r"non-finite values in 'weight'") as caught:
        Predictor.load(str(bundle_copy))
    assert "\n" not in str(caught.value)


def test_bundle_with_truncated_weights_is_rejected(bundle_copy):
    weights_path = bundle_copy / "weights.safetensors"
    weights_path.write_bytes(weights_path.read_bytes()[:-1000])
    rehash(bundle_copy, "weights.safetensors")
    with pytest.raises(BundleError, match=r"truncated"):
        Predictor.load(str(bundle_copy))


def test_code_version_prefers_the_commit_packaged_into_the_image(monkeypatch, tmp_path):
    monkeypatch.delenv("GIT_COMMIT", raising=False)
    packaged = tmp_path / "GIT_COMMIT"
    packaged.write_text("0123456789abcdef\n")
    monkeypatch.setattr(bundle_format, "PACKAGED_COMMIT", packaged)
    assert bundle_format.code_version()["git_commit"] == "0123456789abcdef"
    packaged.write_text("\n")  # built without the build argument: fall back to the checkout's commit
    assert bundle_format.code_version()["git_commit"] != "0123456789abcdef"


def test_bundle_keeps_the_training_curves_listed_and_self_contained(tiny_bundle):
    """history.json and report.html are listed (so verified) like every bundle file; the report needs no network."""
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert {"history.json", "report.html"} <= set(manifest["files"])
    history = json.loads((tiny_bundle / "history.json").read_text())
    assert history and {"train_loss", "validation_loss", "train_accuracy", "validation_accuracy"} <= set(history[0])
    report = (tiny_bundle / "report.html").read_text()
    assert report.count("<svg") == 2 and report.count("<polyline") == 4
    # the SVG namespace is an identifier, not a fetch; nothing else may point outside the page
    assert not re.search(r"(src|href)=|https?://(?!www\.w3\.org/2000/svg)|<script|<link", report)
