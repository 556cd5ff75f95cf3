"""The API's routes as a Blueprint: `/predict` and the web page (health, metrics and the OpenAPI document are on
the ops port, `workload.serving.ops`)."""

from __future__ import annotations

import json
import logging
import math

import orjson
from flask import Blueprint, Response, current_app, render_template, request

from workload.bundle.predictor import Prediction
from workload.errors import first_line
from workload.serving import capture, metrics
from workload.serving.errors import ApiError
from workload.serving.model_state import ModelHolder
from workload.serving.ops import NOT_READY_REASON
from workload.serving.schemas import PredictRequest, parse_predict_request
from workload.serving.settings import ServeSettings

SETTINGS_KEY = "serve_settings"
CAPTURE_KEY = "data_capture"
REQUEST_ID_HEADER = "X-Request-Id"

log = logging.getLogger("workload.api")

routes = Blueprint("api", __name__)


def _holder() -> ModelHolder:
    return current_app.extensions[ModelHolder.EXTENSION_KEY]


def _settings() -> ServeSettings:
    return current_app.extensions[SETTINGS_KEY]


def predict_texts(parsed: PredictRequest) -> tuple[str, list[Prediction]]:
    holder = _holder()
    predictor = holder.predictor
    if predictor is None:
        log.warning("answered 503: %s", holder.reason)
        raise ApiError(503, "not_ready", NOT_READY_REASON)
    predictions = predictor.predict(parsed.texts)
    if not all(math.isfinite(prediction.score) for prediction in predictions):
        # NaN is not JSON, and no client can act on it: the model is broken for this input, so say not ready.
        log.error("model %s returned a non-finite score; answered 503", predictor.version)
        raise ApiError(503, "not_ready", NOT_READY_REASON)
    metrics.BATCH_SIZE.observe(len(parsed.texts))
    for prediction in predictions:
        metrics.PREDICTIONS.labels(prediction.label).inc()
    return predictor.version, predictions


@routes.post("/predict")
def predict() -> Response:
    settings = _settings()
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Content-Type must be application/json")
    parsed = parse_predict_request(_json_body(), settings.max_batch, settings.max_text_chars)
    version, predictions = predict_texts(parsed)
    if parsed.batch:
        answer = {"predictions": [{"label": p.label, "score": float(p.score)} for p in predictions]}
    else:
        answer = {"label": predictions[0].label, "score": float(predictions[0].score)}
    answer["model_version"] = version
    # orjson straight into a Response: a third of jsonify's cost on the hot path (scores are finite: checked above)
    return Response(
        orjson.dumps(answer), mimetype="application/json", headers={REQUEST_ID_HEADER: _capture(parsed, predictions)}
    )


def _capture(parsed: PredictRequest, predictions: list[Prediction]) -> str:
    """Hand the request to data capture (sampled, never blocking); returns the request id to echo."""
    request_id = capture.request_id(request.headers.get(REQUEST_ID_HEADER))
    predictor = _holder().predictor
    assert predictor is not None  # predict_texts has just used it, and a loaded model is never unloaded
    current_app.extensions[CAPTURE_KEY].record(request_id, predictor, parsed.texts, predictions)
    return request_id


@routes.route("/", methods=["GET", "POST"])
def page() -> tuple[str, int]:
    """The web page; with JS off the form POSTs here and the result is rendered server-side."""
    settings = _settings()
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


def _json_body() -> object:
    data = request.get_data(cache=False)  # raises 413 past MAX_CONTENT_LENGTH
    try:
        return orjson.loads(data)  # the fast path: ~5x the standard library's speed
    except orjson.JSONDecodeError:
        pass  # orjson is stricter (lone surrogates, NaN, huge integers): `json` decides, so the answers stay the same
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:  # RecursionError: deeply nested arrays are valid-looking JSON
        raise ApiError(400, "malformed_json", f"request body is not valid JSON: {first_line(exc)}") from None
