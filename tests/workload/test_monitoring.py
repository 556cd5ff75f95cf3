"""Model monitoring: the bundle's baseline, the drift checks and the `monitor` command, on moto (embedded S3 and
CloudWatch). Captured traffic is synthetic here: records drawn like the baseline, and drifted ones."""

from __future__ import annotations

import gzip
import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from workload.bundle.format import BASELINE, MANIFEST, BundleError, verify_folder
from workload.cli import main
from workload.monitoring.baseline import compute_baseline

from workload import storage

N_BASELINE = 2_000


def draw(rng: np.random.Generator, n: int, *, negative_only: bool = False, max_words: int | None = None) -> dict:
    """Features like a sentiment model's on IMDB: bimodal scores, log-normal lengths, a few unknown tokens."""
    positive = np.zeros(n, dtype=bool) if negative_only else rng.random(n) < 0.5
    scores = np.where(positive, rng.beta(6, 1.5, n), rng.beta(1.5, 6, n))
    lengths = np.maximum(1, rng.lognormal(5.3, 0.6, n).astype(int))
    if max_words is not None:
        lengths = np.minimum(lengths, max_words)
    return {"scores": scores, "lengths": lengths, "unknown": rng.beta(2, 60, n)}


def synthetic_baseline(seed: int = 0) -> dict:
    drawn = draw(np.random.default_rng(seed), N_BASELINE)
    return compute_baseline(drawn["scores"], drawn["lengths"], drawn["unknown"], [False] * N_BASELINE, 0.9)


def bundle_with_baseline(source: Path, target: Path, baseline: dict | None) -> Path:
    """A copy of `source` whose manifest lists `baseline` (or no baseline at all), still verifying."""
    shutil.copytree(source, target)
    manifest = json.loads((target / MANIFEST).read_text())
    (target / BASELINE).unlink()
    del manifest["files"][BASELINE]
    if baseline is not None:
        (target / BASELINE).write_text(json.dumps(baseline))
        manifest["files"][BASELINE] = storage.sha256_file(target / BASELINE)
    (target / MANIFEST).write_text(json.dumps(manifest))
    verify_folder(target)
    return target


def write_capture(capture_uri: str, version: str, drawn: dict, when: datetime) -> None:
    records = [
        {"time": when.isoformat(timespec="milliseconds"), "request_id": f"r{i}", "model_version": version,
         "token_length": int(length), "unknown_token_rate": float(unknown), "non_ascii": False,
         "score": float(score), "label": "positive" if score >= 0.5 else "negative"}
        for i, (score, length, unknown) in enumerate(
            zip(drawn["scores"], drawn["lengths"], drawn["unknown"], strict=True)
        )
    ]  # fmt: skip
    body = gzip.compress("".join(json.dumps(r) + "\n" for r in records).encode())
    partition = f"model_version={version}/date={when:%Y-%m-%d}/hour={when:%H}"
    storage.write_bytes(f"{capture_uri.rstrip('/')}/{partition}/host-1-{when.timestamp():.0f}.jsonl.gz", body)


def run_monitor(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict | None, str]:
    code = main(["monitor", *args])
    out, err = capsys.readouterr()
    lines = out.strip().splitlines()
    return code, json.loads(lines[-1]) if code == 0 else None, err


@pytest.fixture
def monitored(tmp_path: Path, tiny_bundle: Path) -> tuple[Path, str]:
    bundle = bundle_with_baseline(tiny_bundle, tmp_path / "bundle", synthetic_baseline())
    return bundle, json.loads((bundle / MANIFEST).read_text())["version"]


# --- the baseline in the bundle -------------------------------------------------------------------------------


def test_train_writes_a_baseline_of_the_validation_split_covered_by_the_manifest(tiny_bundle, tmp_path):
    baseline = json.loads((tiny_bundle / BASELINE).read_text())
    metrics = json.loads((tiny_bundle / "metrics.json").read_text())
    assert baseline["n"] == metrics["n_validation"]
    assert baseline["validation_accuracy"] == metrics["validation_accuracy"]
    for histogram in (baseline["score"], baseline["token_length"]):
        assert len(histogram["shares"]) == len(histogram["edges"]) - 1
        assert sum(histogram["shares"]) == pytest.approx(1.0)
    assert 0 < baseline["positive_rate"] < 1 and 0 <= baseline["unknown_token_rate"] < 1
    tampered = shutil.copytree(tiny_bundle, tmp_path / "tampered")
    (tampered / BASELINE).write_text(json.dumps({**baseline, "positive_rate": 0.99}))
    with pytest.raises(BundleError, match=r"baseline\.json does not match"):
        verify_folder(tampered)


# --- the monitor command ----------------------------------------------------------------------------------------


def test_traffic_like_the_baseline_is_not_drift_and_the_report_lands_in_s3(monitored, s3_bucket, capsys):
    bundle, version = monitored
    capture = f"s3://{s3_bucket}/capture/"
    now = datetime.now(UTC)
    write_capture(capture, version, draw(np.random.default_rng(1), 1_200), now - timedelta(minutes=5))
    # another version's records and records from before the window must not count
    write_capture(capture, "other-version", draw(np.random.default_rng(2), 500, negative_only=True), now)
    write_capture(capture, version, draw(np.random.default_rng(3), 500, negative_only=True), now - timedelta(hours=30))
    output = f"s3://{s3_bucket}/logs/monitoring/run-1"
    code, summary, _ = run_monitor(capsys, "--model", str(bundle), "--capture", capture, "--output", output)
    assert code == 0 and summary is not None
    assert summary["model_version"] == version and summary["n"] == 1_200 and summary["drift"] is False
    assert set(summary["checks"]) == {"score_psi", "length_psi", "positive_rate_change", "unknown_rate_change"}
    for check in summary["checks"].values():
        assert check["status"] == "ok" and check["value"] < check["warning"]
    assert summary["checks"]["score_psi"]["value"] < 0.1 and summary["checks"]["length_psi"]["value"] < 0.1
    report = json.loads(storage.read_bytes(f"{output}/report.json"))
    assert report["checks"] == summary["checks"]
    html = storage.read_bytes(f"{output}/report.html").decode()
    assert html.count("<svg") == 3 and "http" not in html and "<script" not in html  # self-contained


@pytest.mark.parametrize(
    ("stream", "drifted_checks"),
    [
        ({"negative_only": True}, {"score_psi", "positive_rate_change"}),
        ({"max_words": 20}, {"length_psi"}),
    ],
    ids=["only-negative", "cut-to-20-words"],
)
def test_drifted_streams_are_flagged(monitored, tmp_path, capsys, stream, drifted_checks):
    bundle, version = monitored
    capture = str(tmp_path / "capture")
    write_capture(capture, version, draw(np.random.default_rng(4), 600, **stream), datetime.now(UTC))
    code, summary, _ = run_monitor(
        capsys, "--model", str(bundle), "--capture", capture, "--hours", "1", "--output", str(tmp_path / "report")
    )
    assert code == 0 and summary is not None and summary["drift"] is True
    assert {name for name, check in summary["checks"].items() if check["status"] == "drift"} == drifted_checks


def test_too_few_records_is_insufficient_data_not_drift(monitored, tmp_path, capsys):
    bundle, version = monitored
    capture = str(tmp_path / "capture")
    write_capture(capture, version, draw(np.random.default_rng(5), 150, negative_only=True), datetime.now(UTC))
    args = ["--model", str(bundle), "--capture", capture, "--output", str(tmp_path / "report")]
    code, summary, _ = run_monitor(capsys, *args)
    assert code == 0 and summary["n"] == 150 and summary["drift"] is False
    assert {check["status"] for check in summary["checks"].values()} == {"insufficient_data"}
    code, summary, _ = run_monitor(capsys, *args, "--min-records", "100")  # the minimum is configurable
    assert summary["drift"] is True


def test_thresholds_are_configurable(monitored, tmp_path, capsys):
    bundle, version = monitored
    capture = str(tmp_path / "capture")
    write_capture(capture, version, draw(np.random.default_rng(6), 600, max_words=20), datetime.now(UTC))
    args = ["--model", str(bundle), "--capture", capture, "--output", str(tmp_path / "report")]
    code, summary, _ = run_monitor(capsys, *args, "--psi-warning", "50", "--psi-drift", "100")
    assert summary["drift"] is False and summary["checks"]["length_psi"]["threshold"] == 100
    code, _, err = run_monitor(capsys, *args, "--psi-warning", "0.5", "--psi-drift", "0.2")
    assert code == 1 and err.count("\n") == 1 and "warning threshold" in err


def test_publish_metrics_puts_each_check_to_cloudwatch(monitored, tmp_path, capsys, s3_env, embedded_s3, monkeypatch):
    import boto3

    monkeypatch.setenv("AWS_ENDPOINT_URL_CLOUDWATCH", embedded_s3.endpoint_url)  # moto_server serves every service
    monkeypatch.setenv("STACK_NAME", "imdb-sentiment-test")
    bundle, version = monitored
    capture = str(tmp_path / "capture")
    write_capture(capture, version, draw(np.random.default_rng(7), 300), datetime.now(UTC))
    code, _, _ = run_monitor(
        capsys, "--model", str(bundle), "--capture", capture, "--output", str(tmp_path / "r"), "--publish-metrics"
    )
    assert code == 0
    listed = boto3.client("cloudwatch").list_metrics(Namespace="IMDBSentiment/Monitoring")["Metrics"]
    by_dimensions: dict[frozenset, set[str]] = {}
    for metric in listed:
        dims = frozenset((d["Name"], d["Value"]) for d in metric["Dimensions"])
        by_dimensions.setdefault(dims, set()).add(metric["MetricName"])
    names = {"ScorePSI", "LengthPSI", "PositiveRateChange", "UnknownRateChange", "DriftDetected", "CapturedRecords"}
    assert by_dimensions[frozenset({("Stack", "imdb-sentiment-test")})] == names
    assert by_dimensions[frozenset({("Stack", "imdb-sentiment-test"), ("ModelVersion", version)})] == names


def test_a_bundle_without_baseline_has_nothing_to_compare(tiny_bundle, tmp_path, capsys):
    bundle = bundle_with_baseline(tiny_bundle, tmp_path / "old", None)
    capture = tmp_path / "capture"
    capture.mkdir()
    code, _, err = run_monitor(
        capsys, "--model", str(bundle), "--capture", str(capture), "--output", str(tmp_path / "r")
    )
    assert code == 1 and err.startswith("error: ") and "no baseline.json" in err and err.count("\n") == 1
    assert not (tmp_path / "r").exists()  # nothing half-written


@pytest.mark.parametrize("where", ["missing-local", "missing-bucket", "missing-bundle"])
def test_unreadable_capture_or_bundle_is_one_line_and_exit_1(monitored, tmp_path, capsys, s3_env, where):
    bundle, _ = monitored
    model, capture = str(bundle), str(tmp_path)
    if where == "missing-local":
        capture = str(tmp_path / "nowhere")
    elif where == "missing-bucket":
        capture = "s3://no-such-bucket-for-capture/capture/"
    else:
        model = str(tmp_path / "no-bundle")
    code, _, err = run_monitor(capsys, "--model", model, "--capture", capture, "--output", str(tmp_path / "r"))
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1
    assert not (tmp_path / "r").exists()
