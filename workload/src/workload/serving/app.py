"""The Flask application factory: settings from the environment, the model holder, the routes' Blueprint, metrics
hooks and JSON error handlers.

`create_app()` reads its settings from the environment (see `workload.serving.settings`); `config` overrides them
with the same keys (`MODEL_URI`, `MAX_BATCH`, ...). It does not load the model: the server loads it before
accepting connections (`model_holder(app).load_until_ready()`, gunicorn.conf.py's `post_worker_init`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping

from flask import Flask, Response, g, jsonify, request
from gunicorn.http.errors import NoMoreData, ParseException
from werkzeug.exceptions import HTTPException

from workload.errors import first_line
from workload.serving import metrics
from workload.serving.capture import Capture
from workload.serving.errors import HTTP_ERROR_CODES, ApiError
from workload.serving.headers import SecureHeaders
from workload.serving.model_state import ModelHolder
from workload.serving.routes import CAPTURE_KEY, SETTINGS_KEY, routes
from workload.serving.settings import ServeSettings

log = logging.getLogger("workload.api")


def model_holder(app: Flask) -> ModelHolder:
    return app.extensions[ModelHolder.EXTENSION_KEY]


def create_app(config: Mapping[str, object] | None = None) -> Flask:
    settings = ServeSettings.from_mapping(config)
    app = Flask(__name__)
    # Werkzeug enforces this while reading the body (Content-Length or chunked) and raises 413.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    holder = ModelHolder(settings)
    app.extensions.update({ModelHolder.EXTENSION_KEY: holder, SETTINGS_KEY: settings})
    app.extensions[CAPTURE_KEY] = Capture(settings)
    _install_metrics_hooks(app)
    _install_error_handlers(app)
    app.register_blueprint(routes)
    app.wsgi_app = SecureHeaders(app.wsgi_app)  # type: ignore[method-assign]
    return app


def _install_metrics_hooks(app: Flask) -> None:
    @app.before_request
    def start_timer() -> None:
        g.request_started = time.perf_counter()
        metrics.IN_PROGRESS.inc()

    @app.teardown_request
    def finished(_error: BaseException | None) -> None:
        if "request_started" in g:
            metrics.IN_PROGRESS.dec()

    @app.after_request
    def record(response: Response) -> Response:
        # The route pattern, never the raw path: arbitrary 404 paths must not create new time series.
        endpoint = request.url_rule.rule if request.url_rule is not None else "unmatched"
        started = g.get("request_started")
        if started is not None:
            metrics.LATENCY.labels(endpoint).observe(time.perf_counter() - started)
        metrics.REQUESTS.labels(endpoint, str(response.status_code)).inc()
        return response


def _install_error_handlers(app: Flask) -> None:
    @app.errorhandler(ApiError)
    def api_error(error: ApiError) -> tuple[Response, int]:
        return jsonify(error.to_json()), error.status

    @app.errorhandler(HTTPException)
    def http_error(error: HTTPException) -> Response:
        response = error.get_response()  # keeps headers such as 405's Allow
        code = HTTP_ERROR_CODES.get(response.status_code, "http_error")
        response.set_data(json.dumps({"error": {"code": code, "message": error.description or error.name}}))
        response.content_type = "application/json"
        return response

    @app.errorhandler(ParseException)
    @app.errorhandler(NoMoreData)
    def unreadable_body(error: Exception) -> tuple[Response, int]:
        # gunicorn raises its own errors through wsgi.input while the app reads a malformed body (a bad chunk
        # size, a missing CRLF, a body cut short): the client's fault, so 400 and no traceback.
        log.info("unreadable request body on %s %s: %s", request.method, request.path, first_line(error))
        message = f"request body is malformed: {first_line(error)}"
        return jsonify(ApiError(400, "bad_request", message).to_json()), 400

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception) -> tuple[Response, int]:
        # Last resort: the client gets JSON without internals, the log gets the traceback.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify({"error": {"code": "internal_error", "message": "internal server error"}}), 500
