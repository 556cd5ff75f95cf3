"""The model a worker serves, loaded before the worker accepts connections.

Readiness means: bundle fetched, every file verified against its manifest, weights loaded, and a self-test
prediction returned sane output. gunicorn.conf.py's `post_worker_init` calls `load_until_ready` in each worker
after fork and before its accept loop, so a worker (also one that replaces a killed worker) never takes a
request it would answer with 503; connections wait in the listen backlog or go to a ready sibling meanwhile.
While the bundle is missing or bad, the worker keeps retrying and logs each distinct failure once instead of
once per retry. The predictor is published with a single reference assignment, so a request sees either no
model or a complete one.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from workload.bundle.predictor import Predictor, self_test
from workload.errors import first_line
from workload.serving import metrics
from workload.serving.settings import ServeSettings

log = logging.getLogger("workload.serving.model")

# Between retries a loading worker wakes this often to tell the gunicorn master it is alive (else the master
# kills it after GUNICORN_TIMEOUT) and to notice a shutdown.
HEARTBEAT_SECONDS = 1.0


class ModelHolder:
    EXTENSION_KEY = "sentiment_model"  # where the app keeps its holder (`app.extensions`)

    def __init__(self, settings: ServeSettings) -> None:
        self._settings = settings
        self._predictor: Predictor | None = None
        self._reason = "model not configured (set MODEL_URI)" if settings.model_uri is None else "model is loading"
        self._last_logged_failure: str | None = None

    @property
    def predictor(self) -> Predictor | None:
        return self._predictor

    @property
    def reason(self) -> str:
        """Why there is no model yet (for the log, never for clients); only meaningful while `predictor` is None."""
        return self._reason

    def activate(self, predictor: Predictor, load_seconds: float) -> None:
        """Self-test `predictor` and, if it passes, serve it from now on."""
        self_test(predictor)
        metrics.MODEL_LOAD_SECONDS.labels(predictor.version).set(load_seconds)
        self._predictor = predictor
        # After publishing: the gauge feeds the ops port's `/health`, which must not count a worker ready early.
        metrics.MODEL_READY.labels(predictor.version).set(1)
        log.info("model %s ready in %.2fs", predictor.version, load_seconds)

    def load_once(self) -> bool:
        """One attempt to fetch, verify, load and self-test the bundle; True once a model is served."""
        if self._predictor is not None or self._settings.model_uri is None:
            return self._predictor is not None
        cache_dir = Path(self._settings.model_cache_dir) if self._settings.model_cache_dir else None
        started = time.perf_counter()
        try:
            self.activate(Predictor.load(self._settings.model_uri, cache_dir=cache_dir), time.perf_counter() - started)
            return True
        except Exception as exc:  # the loader is a boundary: any failure means "not ready", never a crash
            # One line, always: it is the CloudWatch log line operators search for.
            self._reason = f"model not ready: {first_line(exc)}"
            if self._reason != self._last_logged_failure:
                log.error(
                    "%s (uri=%s; retrying every %gs)",
                    self._reason,
                    self._settings.model_uri,
                    self._settings.model_retry_seconds,
                )
                self._last_logged_failure = self._reason
            return False

    def load_until_ready(
        self, keep_going: Callable[[], bool] = lambda: True, heartbeat: Callable[[], None] = lambda: None
    ) -> bool:
        """Retry `load_once` every MODEL_RETRY_SECONDS until it succeeds or `keep_going()` turns False."""
        while keep_going():
            heartbeat()
            if self.load_once():
                return True
            retry_at = time.monotonic() + self._settings.model_retry_seconds
            while keep_going() and time.monotonic() < retry_at:
                heartbeat()
                time.sleep(min(HEARTBEAT_SECONDS, max(0.0, retry_at - time.monotonic())))
        return False
