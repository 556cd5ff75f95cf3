"""The drift checks: captured records against the bundle's baseline, each value against its thresholds.

| check                  | value                                                       | warning | drift |
|------------------------|-------------------------------------------------------------|---------|-------|
| `score_psi`            | PSI of the score distribution (baseline's tenths of [0, 1]) | 0.1     | 0.2   |
| `length_psi`           | PSI of token lengths (baseline's length deciles)            | 0.1     | 0.2   |
| `positive_rate_change` | abs(current - baseline share of scores >= 0.5)              | 0.1     | 0.2   |
| `unknown_rate_change`  | abs(current - baseline mean unknown-token rate)             | 0.02    | 0.05  |

PSI = sum over bins of (current - baseline) * ln(current / baseline), bin shares floored at 1e-4 so an empty
bin does not make it infinite. With fewer records than `min_records` (200) every check is `insufficient_data`
(the value is still shown) and nothing counts as drift.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from workload.monitoring.baseline import bin_shares
from workload.monitoring.settings import Settings, Thresholds

_SHARE_FLOOR = 1e-4


@dataclass(frozen=True)
class Current:
    """The captured records' features, one array entry per record."""

    scores: np.ndarray
    token_lengths: np.ndarray
    unknown_rates: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


def psi(baseline: Sequence[float], current: Sequence[float]) -> float:
    """Population stability index of two share vectors over the same bins."""
    expected = np.maximum(np.asarray(baseline, dtype=np.float64), _SHARE_FLOOR)
    actual = np.maximum(np.asarray(current, dtype=np.float64), _SHARE_FLOOR)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def status(value: float | None, thresholds: Thresholds, enough: bool) -> str:
    if not enough or value is None or math.isnan(value):
        return "insufficient_data"
    if value >= thresholds.drift:
        return "drift"
    return "warning" if value >= thresholds.warning else "ok"


def check_values(baseline: dict, current: Current) -> dict[str, float | None]:
    """Each check's value (None without records)."""
    if len(current) == 0:
        return dict.fromkeys(("score_psi", "length_psi", "positive_rate_change", "unknown_rate_change"))
    score, length = baseline["score"], baseline["token_length"]
    return {
        "score_psi": psi(score["shares"], bin_shares(current.scores, score["edges"])),
        "length_psi": psi(length["shares"], bin_shares(current.token_lengths, length["edges"])),
        "positive_rate_change": abs(float((current.scores >= 0.5).mean()) - baseline["positive_rate"]),
        "unknown_rate_change": abs(float(current.unknown_rates.mean()) - baseline["unknown_token_rate"]),
    }


def run_checks(baseline: dict, current: Current, settings: Settings) -> dict[str, dict]:
    """{name: {value, threshold (drift), warning, status}} for the four checks."""
    thresholds = {
        "score_psi": settings.psi,
        "length_psi": settings.psi,
        "positive_rate_change": settings.positive_rate,
        "unknown_rate_change": settings.unknown_rate,
    }
    enough = len(current) >= settings.min_records
    return {
        name: {
            "value": value,
            "threshold": thresholds[name].drift,
            "warning": thresholds[name].warning,
            "status": status(value, thresholds[name], enough),
        }
        for name, value in check_values(baseline, current).items()
    }
