"""Shared fixtures: a synthetic aclImdb tarball, the processed data ingested from it, and a tiny trained bundle.

Session-scoped and built from `workload.synthetic`, so no test needs the network or the real data set.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from workload.synthetic import write_aclimdb_tarball


@pytest.fixture(scope="session")
def synthetic_tarball(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small aclImdb-layout tarball with train (pos/neg/unsup) and test (pos/neg) splits."""
    path = tmp_path_factory.mktemp("raw") / "aclImdb_synthetic.tar.gz"
    return write_aclimdb_tarball(path, n_train=60, n_test=30, n_unsup=10, seed=0)


@pytest.fixture(scope="session")
def processed_data(tmp_path_factory: pytest.TempPathFactory, synthetic_tarball: Path) -> Path:
    """A local processed-data folder made by `ingest` from the synthetic tarball."""
    from workload.data import ingest

    output = tmp_path_factory.mktemp("processed") / "data"
    ingest(str(synthetic_tarball), str(output))
    return output


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory, processed_data: Path) -> Path:
    """A local bundle of the default architecture trained on the synthetic corpus in a few seconds."""
    from workload.bundle import write_bundle
    from workload.data import open_processed
    from workload.train import TrainOptions, train

    output = tmp_path_factory.mktemp("models") / "tiny"
    with open_processed(str(processed_data)) as data:
        trained = train(data, TrainOptions(epochs=3, threads=1))
        write_bundle(
            str(output), trained=trained, data_manifest_sha256=data.manifest_sha256, data_uri=str(processed_data)
        )
    return output
