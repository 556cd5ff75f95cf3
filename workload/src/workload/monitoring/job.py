"""`python -m workload monitor`: compare a model version's captured traffic in a time window with its baseline.

Reads `<capture>/model_version=<v>/date=.../hour=.../*.jsonl.gz` (only the hour partitions the window touches),
runs the checks of `workload.monitoring.drift`, writes `report.html` then `report.json` to the output, optionally
publishes each check's value to CloudWatch, and prints the summary as its last stdout line.
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import re
import zlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

from workload import storage
from workload.bundle.fetch import fetch
from workload.bundle.format import BASELINE
from workload.errors import WorkloadError, first_line
from workload.monitoring import drift
from workload.monitoring.baseline import bin_shares
from workload.monitoring.report import render_html
from workload.monitoring.settings import DEFAULT_HOURS, NAMESPACE, Settings

log = logging.getLogger(__name__)

# CloudWatch metric per check; components/model_monitoring.py alarms on the same names (a test keeps them equal).
METRIC_NAMES = {
    "score_psi": "ScorePSI",
    "length_psi": "LengthPSI",
    "positive_rate_change": "PositiveRateChange",
    "unknown_rate_change": "UnknownRateChange",
}
DRIFT_METRIC, RECORDS_METRIC = "DriftDetected", "CapturedRecords"
_PARTITION = re.compile(r"date=(\d{4}-\d\d-\d\d)/hour=(\d\d)/[^/]+\.jsonl\.gz$")


@dataclass(frozen=True)
class Window:
    since: datetime
    until: datetime

    def touches_hour(self, date: str, hour: str) -> bool:
        start = datetime.fromisoformat(f"{date}T{hour}:00:00+00:00")
        return start <= self.until and start + timedelta(hours=1) > self.since

    def to_json(self) -> dict[str, str]:
        return {"since": self.since.isoformat(timespec="seconds"), "until": self.until.isoformat(timespec="seconds")}


def window(since: str | None, hours: float | None, now: datetime) -> Window:
    if since is None:
        return Window(now - timedelta(hours=hours or DEFAULT_HOURS), now)
    try:
        start = datetime.fromisoformat(since)
    except ValueError:
        raise WorkloadError(f"--since must be an ISO 8601 time such as 2026-01-31T12:00:00Z, got {since!r}") from None
    start = start if start.tzinfo else start.replace(tzinfo=UTC)
    if start >= now:
        raise WorkloadError(f"--since {since} is not in the past")
    return Window(start, now)


def load_baseline(model_uri: str) -> tuple[str, dict]:
    """The bundle's version and baseline; a bundle trained before baselines existed is a clear error."""
    folder, manifest = fetch(model_uri)
    if BASELINE not in manifest["files"]:
        raise WorkloadError(
            f"model {manifest['version']} at {model_uri} has no {BASELINE} (trained before baselines were "
            "written): nothing to compare the captured traffic against; retrain it to monitor it"
        )
    return manifest["version"], json.loads((folder / BASELINE).read_text(encoding="utf-8"))


def read_capture(capture_uri: str, version: str, span: Window) -> tuple[drift.Current, int]:
    """Features of the version's records in the window, and the number of objects that could not be read."""
    if not storage.is_s3(capture_uri) and not Path(capture_uri).is_dir():
        raise WorkloadError(f"no capture folder at {capture_uri}")
    prefix = storage.join(capture_uri, f"model_version={version}")
    features: list[tuple[float, int, float]] = []
    unreadable = 0
    for name in storage.list_names(prefix):
        match = _PARTITION.search(name)
        if match is None or not span.touches_hour(*match.groups()):
            continue
        try:
            lines = gzip.decompress(storage.read_bytes(storage.join(prefix, name))).splitlines()
            records = [json.loads(line) for line in lines if line.strip()]
            features.extend(
                (float(r["score"]), int(r["token_length"]), float(r["unknown_token_rate"]))
                for r in records
                if span.since <= datetime.fromisoformat(r["time"]) <= span.until
            )
        except (OSError, EOFError, zlib.error, ValueError, KeyError, TypeError) as exc:
            unreadable += 1  # one damaged object must not blind the monitor to all the others
            log.warning("skipping unreadable capture object %s: %s", name, first_line(exc))
    columns = np.array(features, dtype=np.float64).reshape(-1, 3)
    return drift.Current(columns[:, 0], columns[:, 1], columns[:, 2]), unreadable


def publish_metrics(summary: dict, namespace: str, stack: str) -> None:
    """Each check's value, the drift verdict and the record count; once per stack (what the alarms watch, so
    they survive a promotion) and once per stack and model version (for the dashboards)."""
    import boto3
    from botocore.exceptions import BotoCoreError, ClientError

    values = {METRIC_NAMES[name]: check["value"] for name, check in summary["checks"].items()}
    values |= {DRIFT_METRIC: float(summary["drift"]), RECORDS_METRIC: float(summary["n"])}
    dimension_sets = [
        [{"Name": "Stack", "Value": stack}],
        [{"Name": "Stack", "Value": stack}, {"Name": "ModelVersion", "Value": summary["model_version"]}],
    ]
    data = [
        {"MetricName": metric, "Dimensions": dimensions, "Value": value}
        for metric, value in values.items()
        if value is not None
        for dimensions in dimension_sets
    ]
    try:
        boto3.client("cloudwatch").put_metric_data(Namespace=namespace, MetricData=data)
    except (BotoCoreError, ClientError) as exc:
        raise WorkloadError(f"cannot publish metrics to CloudWatch namespace {namespace}: {first_line(exc)}") from exc


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_args(args)
    version, baseline = load_baseline(args.model)
    span = window(args.since, args.hours, datetime.now(UTC))
    current, unreadable = read_capture(args.capture, version, span)
    checks = drift.run_checks(baseline, current, settings)
    summary = {
        "model_version": version,
        "n": len(current),
        "drift": any(check["status"] == "drift" for check in checks.values()),
        "checks": checks,
        "window": span.to_json(),
        "unreadable_objects": unreadable,
        "report": storage.join(args.output, "report.html"),
    }
    shares = {
        "score": bin_shares(current.scores, baseline["score"]["edges"]),
        "token_length": bin_shares(current.token_lengths, baseline["token_length"]["edges"]),
    }
    # The page first, the JSON last: a reader that finds report.json finds the page that goes with it.
    storage.write_bytes(storage.join(args.output, "report.html"), render_html(summary, baseline, shares).encode())
    storage.write_bytes(storage.join(args.output, "report.json"), json.dumps(summary, indent=2).encode())
    if args.publish_metrics:
        publish_metrics(summary, NAMESPACE, os.environ.get("STACK_NAME") or "local")
    print(json.dumps(summary))
    return 0
