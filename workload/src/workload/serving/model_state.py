"""The model a worker serves, loaded in a background thread so the worker answers `/health` (503) meanwhile.

Readiness means: bundle fetched, every file verified against its manifest, weights loaded, and a self-test
prediction returned sane output. Until then (or if the bundle is missing or tampered) the worker keeps
retrying and reports the reason, logging each distinct failure once instead of once per retry. The predictor
is published with a single reference assignment, so a request sees either no model or a complete one.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path

from workload.bundle.predictor import Predictor, self_test
from workload.errors import first_line
from workload.serving import metrics
from workload.serving.settings import ServeSettings

log = logging.getLogger("workload.modeling.architectures")

# Set by gunicorn.conf.py: how many workers the service runs, so one worker can tell whether all are ready.
WORKER_COUNT_ENV = "SERVE_WORKER_COUNT"


def workers_still_loading() -> str | None:
    """Why the service as a whole is not ready although this worker is, or None.

    Readiness is reported for the service, not the worker that happens to answer: a load balancer that got
    200 from a ready worker would otherwise send traffic to a sibling still loading (and get 503s)."""
    expected = int(os.environ.get(WORKER_COUNT_ENV) or 0)
    ready = metrics.ready_worker_count()
    if not expected or ready is None or ready >= expected:
        return None
    return f"{expected - ready} of {expected} workers are still loading the model"


class ModelHolder:
    EXTENSION_KEY = "sentiment_model"  # where the app keeps its holder (`app.extensions`)

    def __init__(self, settings: ServeSettings) -> None:
        self._settings = settings
        self._predictor: Predictor | None = None
        self._reason = "model not configured (set MODEL_URI)" if settings.model_uri is None else "model is loading"
        self._thread: threading.Thread | None = None

    @property
    def predictor(self) -> Predictor | None:
        return self._predictor

    @property
    def reason(self) -> str:
        """Why there is no model yet; only meaningful while `predictor` is None."""
        return self._reason

    def activate(self, predictor: Predictor, load_seconds: float) -> None:
        """Self-test `predictor` and, if it passes, serve it from now on."""
        self_test(predictor)
        metrics.MODEL_LOAD_SECONDS.labels(predictor.version).set(load_seconds)
        self._predictor = predictor
        # After publishing: the gauge feeds the service-wide `/health`, which must not count a worker ready early.
        metrics.MODEL_READY.set(1)
        log.info("model %s ready in %.2fs", predictor.version, load_seconds)

    def start_loading(self) -> None:
        """Load in a daemon thread of the current process (call it in the worker, after any fork)."""
        if self._settings.model_uri is None or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._load_until_ready, name="model-loader", daemon=True)
        self._thread.start()

    def wait_until_ready(self, timeout: float) -> bool:
        """True once the model is ready; for callers that need a loaded model before going on (the tests)."""
        deadline = time.monotonic() + timeout
        while self._predictor is None and time.monotonic() < deadline:
            time.sleep(0.02)
        return self._predictor is not None

    def _load_until_ready(self) -> None:
        assert self._settings.model_uri is not None
        cache_dir = Path(self._settings.model_cache_dir) if self._settings.model_cache_dir else None
        last_failure = None
        while self._predictor is None:
            started = time.perf_counter()
            try:
                predictor = Predictor.load(self._settings.model_uri, cache_dir=cache_dir)
                self.activate(predictor, time.perf_counter() - started)
                return
            except Exception as exc:  # the loader is a boundary: any failure means "not ready", never a crash
                # One line, always: the reason is also the `/health` body and the CloudWatch log line.
                failure = f"model not ready: {first_line(exc)}"
                self._reason = failure
                if failure != last_failure:
                    log.error(
                        "%s (uri=%s; retrying every %gs)",
                        failure,
                        self._settings.model_uri,
                        self._settings.model_retry_seconds,
                    )
                    last_failure = failure
            time.sleep(self._settings.model_retry_seconds)
