"""Shared fixtures: a synthetic aclImdb tarball, the processed data ingested from it, and a tiny trained bundle.

Session-scoped and built from `workload_devtools.synthetic`, so no test needs the network or the real data set.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from workload_devtools.embedded_s3 import EmbeddedS3
from workload_devtools.synthetic import write_aclimdb_tarball

if TYPE_CHECKING:
    from workload.modeling.train import TrainedModel


@pytest.fixture(scope="session")
def synthetic_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small aclImdb-layout tarball with train (pos/neg/unsup) and test (pos/neg) splits."""
    path = tmp_path_factory.mktemp("raw") / "aclImdb_synthetic.tar.gz"
    return write_aclimdb_tarball(path, n_train=60, n_test=30, n_unsup=10, seed=0)


@pytest.fixture(scope="session")
def processed_data(tmp_path_factory: pytest.TempPathFactory, synthetic_tarball: Path) -> Path:
    """A local processed-data folder made by `ingest` from the synthetic tarball."""
    from workload.data.ingest import ingest

    output = tmp_path_factory.mktemp("processed") / "data"
    ingest(str(synthetic_tarball), str(output))
    return output


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory, processed_data: Path) -> Path:
    """A local bundle of the default architecture (with its baseline, like `train` writes) trained on the synthetic
    corpus in a few seconds."""
    from workload.bundle.format import write_bundle
    from workload.data.processed import open_processed
    from workload.modeling.train import TrainOptions, train
    from workload.monitoring.baseline import validation_baseline

    output = tmp_path_factory.mktemp("models") / "tiny"
    with open_processed(str(processed_data)) as data:
        trained = train(data, TrainOptions(epochs=3, threads=1))
        write_bundle(
            str(output), trained=trained, data_manifest_sha256=data.manifest_sha256, data_uri=str(processed_data),
            baseline=lambda predictor: validation_baseline(predictor, data),
        )  # fmt: skip
    return output


@pytest.fixture(scope="session")
def bilstm_bundle(tmp_path_factory: pytest.TempPathFactory, processed_data: Path) -> tuple[Path, TrainedModel]:
    """A local bilstm bundle (one epoch) and the trained torch model it was written from."""
    from workload.bundle.format import write_bundle
    from workload.data.processed import open_processed
    from workload.modeling.train import TrainOptions, train

    folder = tmp_path_factory.mktemp("models") / "lstm"
    with open_processed(str(processed_data)) as data:
        trained = train(data, TrainOptions(arch="bilstm", epochs=1, threads=1))
        write_bundle(str(folder), trained=trained, data_manifest_sha256="0" * 64, data_uri="local")
    return folder, trained


@pytest.fixture(scope="session")
def embedded_s3() -> Iterator[EmbeddedS3]:
    """One moto S3 server on 127.0.0.1 for the session; use `.child_env()` for subprocesses."""
    with EmbeddedS3() as server:
        yield server


@pytest.fixture
def s3_env(embedded_s3: EmbeddedS3, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point this process's boto3 at the embedded S3 (endpoint + dummy credentials) for one test."""
    env = embedded_s3.child_env()
    for key in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def s3_bucket(s3_env: dict[str, str]) -> str:
    """A fresh, empty bucket on the embedded S3; returns its name."""
    import boto3

    name = f"test-{uuid.uuid4().hex[:12]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name
