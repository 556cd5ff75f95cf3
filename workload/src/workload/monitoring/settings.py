"""The monitor's thresholds and its command line (standard library only: `python -m workload --help` stays instant).

Defaults: PSI >= 0.1 warns and >= 0.2 is drift; a positive-rate change of 0.1 / 0.2; an unknown-token-rate
change of 0.02 / 0.05; fewer than 200 records is `insufficient_data`. See `workload.monitoring.drift`.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

from workload.errors import WorkloadError

NAMESPACE = "IMDBSentiment/Monitoring"
DEFAULT_HOURS = 24.0


@dataclass(frozen=True)
class Thresholds:
    warning: float
    drift: float

    def __post_init__(self) -> None:
        if not 0 <= self.warning <= self.drift:
            raise WorkloadError(
                f"a warning threshold ({self.warning:g}) must be between 0 and its drift threshold ({self.drift:g})"
            )


@dataclass(frozen=True)
class Settings:
    psi: Thresholds = Thresholds(0.1, 0.2)
    positive_rate: Thresholds = Thresholds(0.1, 0.2)
    unknown_rate: Thresholds = Thresholds(0.02, 0.05)
    min_records: int = 200

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Settings:
        return cls(
            psi=Thresholds(args.psi_warning, args.psi_drift),
            positive_rate=Thresholds(args.positive_rate_warning, args.positive_rate_drift),
            unknown_rate=Thresholds(args.unknown_rate_warning, args.unknown_rate_drift),
            min_records=args.min_records,
        )


def non_negative_float(value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not number >= 0:  # also rejects NaN
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {value!r}")
    return number


def configure_parser(parser: argparse.ArgumentParser, positive_int: Callable[[str], int]) -> None:
    parser.add_argument("--model", required=True, help="bundle URI (its baseline.json is the reference)")
    parser.add_argument("--capture", required=True, help="capture URI: s3://bucket/capture/ or a local folder")
    when = parser.add_mutually_exclusive_group()
    when.add_argument("--since", metavar="ISO8601", help="window start (UTC unless it names a zone)")
    when.add_argument(
        "--hours", type=non_negative_float, metavar="N", help=f"the last N hours (default {DEFAULT_HOURS:g})"
    )
    parser.add_argument("--output", required=True, help="where report.json and report.html go (folder or S3 prefix)")
    parser.add_argument(
        "--publish-metrics",
        action="store_true",
        help=f"put each check's value to CloudWatch ({NAMESPACE}; dimensions Stack=$STACK_NAME and ModelVersion)",
    )
    defaults = Settings()
    for flag, thresholds in (("psi", defaults.psi), ("positive-rate", defaults.positive_rate),
                             ("unknown-rate", defaults.unknown_rate)):  # fmt: skip
        for level in ("warning", "drift"):
            default = getattr(thresholds, level)
            parser.add_argument(f"--{flag}-{level}", type=non_negative_float, default=default, metavar="X",
                                help=f"{level} threshold (default {default:g})")  # fmt: skip
    parser.add_argument("--min-records", type=positive_int, default=defaults.min_records, metavar="N",
                        help=f"fewer records give insufficient_data (default {defaults.min_records})")  # fmt: skip
