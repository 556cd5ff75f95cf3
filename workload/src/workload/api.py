"""The Flask application: `/predict`, health, metrics, the web page and the OpenAPI document.

`create_app()` reads its settings from the environment (see `workload.settings`); `config` overrides them
with the same keys (`MODEL_URI`, `MAX_BATCH`, ...). It starts loading the model in a background thread, so
call it in the process that serves (gunicorn loads the app in each worker, after fork).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping

from flask import Flask, Response, g, jsonify, render_template, request
from werkzeug.exceptions import HTTPException

from workload import metrics
from workload.api_errors import HTTP_ERROR_CODES, ApiError
from workload.errors import first_line
from workload.model_state import ModelHolder, workers_still_loading
from workload.openapi import openapi_document
from workload.schemas import PredictRequest, parse_predict_request
from workload.settings import ServeSettings

log = logging.getLogger("workload.api")

MODEL_HOLDER_KEY = "sentiment_model"


def model_holder(app: Flask) -> ModelHolder:
    return app.extensions[MODEL_HOLDER_KEY]


def create_app(config: Mapping[str, object] | None = None) -> Flask:
    settings = ServeSettings.from_mapping(config)
    app = Flask(__name__)
    # Werkzeug enforces this while reading the body (Content-Length or chunked) and raises 413.
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    holder = ModelHolder(settings)
    app.extensions[MODEL_HOLDER_KEY] = holder
    document = openapi_document(settings)

    _install_metrics_hooks(app)
    _install_error_handlers(app)

    def predict_texts(parsed: PredictRequest) -> tuple[str, list]:
        predictor = holder.predictor
        if predictor is None:
            raise ApiError(503, "not_ready", holder.reason)
        predictions = predictor.predict(parsed.texts)
        metrics.BATCH_SIZE.observe(len(parsed.texts))
        for prediction in predictions:
            metrics.PREDICTIONS.labels(prediction.label).inc()
        return predictor.version, predictions

    @app.post("/predict")
    def predict() -> Response:
        if not request.is_json:
            raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json")
        parsed = parse_predict_request(_json_body(), settings.max_batch, settings.max_text_chars)
        version, predictions = predict_texts(parsed)
        if parsed.batch:
            return jsonify(
                predictions=[{"label": p.label, "score": float(p.score)} for p in predictions], model_version=version
            )
        return jsonify(label=predictions[0].label, score=float(predictions[0].score), model_version=version)

    @app.route("/", methods=["GET", "POST"])
    def page() -> tuple[str, int]:
        """The web page; with JS off the form POSTs here and the result is rendered server-side."""
        if request.method == "GET":
            return render_template("index.html", text="", result=None, error=None, settings=settings), 200
        text = request.form.get("text", "")
        try:
            version, predictions = predict_texts(
                parse_predict_request({"text": text}, settings.max_batch, settings.max_text_chars)
            )
        except ApiError as error:
            return render_template(
                "index.html", text=text, result=None, error=error.message, settings=settings
            ), error.status
        result = {"label": predictions[0].label, "score": float(predictions[0].score), "model_version": version}
        return render_template("index.html", text=text, result=result, error=None, settings=settings), 200

    @app.get("/health")
    def health() -> tuple[Response, int]:
        predictor = holder.predictor
        reason = holder.reason if predictor is None else workers_still_loading()
        if predictor is None or reason is not None:
            return jsonify(status="not_ready", reason=reason), 503
        return jsonify(status="ready", model_version=predictor.version), 200

    @app.get("/health/live")
    def live() -> Response:
        return jsonify(status="alive")

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        body, content_type = metrics.render()
        return Response(body, content_type=content_type)

    @app.get("/openapi.json")
    def openapi() -> Response:
        return jsonify(document)

    holder.start_loading()
    return app


def _json_body() -> object:
    data = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # RecursionError: deeply nested arrays are valid-looking JSON
        raise ApiError(400, "malformed_json", f"request body is not valid JSON: {first_line(exc)}") from None


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

    @app.errorhandler(Exception)
    def unexpected_error(error: Exception) -> tuple[Response, int]:
        # Last resort: the client gets JSON without internals, the log gets the traceback.
        log.exception("unhandled error on %s %s", request.method, request.path)
        return jsonify({"error": {"code": "internal_error", "message": "internal server error"}}), 500
