"""Flask test-client tests: every route and every error path of the API."""

from __future__ import annotations

import json
import math
import time

import pytest
from workload.bundle.predictor import Prediction
from workload.serving.app import create_app, model_holder
from workload.serving.errors import ERROR_CODES
from workload.serving.headers import SECURITY_HEADERS, relative_location
from workload.serving.openapi import openapi_document
from workload.serving.ops import render_metrics
from workload.serving.settings import ServeSettings


class KeywordPredictor:
    """Stands in for the model where a test is about HTTP behaviour, not about the model."""

    version = "fake-v1"
    manifest: dict = {}  # noqa: RUF012

    def predict(self, texts):
        return [Prediction("positive", 0.9) if "amazing" in t else Prediction("negative", 0.2) for t in texts]


@pytest.fixture
def app():
    app = create_app({"MAX_BATCH": 3, "MAX_TEXT_CHARS": 50, "MAX_BODY_BYTES": 4096})
    model_holder(app).activate(KeywordPredictor(), load_seconds=0.01)
    return app


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture(scope="module")
def real_client(tiny_bundle):
    app = create_app({"MODEL_URI": str(tiny_bundle)})
    assert model_holder(app).load_once(), model_holder(app).reason
    return app.test_client()


def model_failures(caplog) -> list:
    return [r for r in caplog.records if r.name == "workload.serving.model" and r.levelname == "ERROR"]


def assert_error(response, status: int, code: str) -> dict:
    assert response.status_code == status, response.data
    assert response.mimetype == "application/json"
    body = response.get_json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]
    assert code in ERROR_CODES, f"{code!r} is missing from the OpenAPI document's error codes"
    return body["error"]


# --- the real model ------------------------------------------------------------------------------------------


def test_predict_single_with_the_real_bundle(real_client, tiny_bundle):
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    positive = real_client.post("/predict", json={"text": "The movie was amazing!"}).get_json()
    negative = real_client.post("/predict", json={"text": "A dull, boring waste of two hours."}).get_json()
    assert positive["label"] == "positive" and positive["score"] > 0.5
    assert negative["label"] == "negative" and negative["score"] < 0.5
    assert positive["model_version"] == negative["model_version"] == manifest["version"]


def test_predict_batch_with_the_real_bundle(real_client):
    texts = ["The movie was amazing!", "A dull, boring waste of two hours.", "Wonderful, superb, loved it"]
    body = real_client.post("/predict", json={"texts": texts}).get_json()
    assert [p["label"] for p in body["predictions"]] == ["positive", "negative", "positive"]
    assert all(0.0 <= p["score"] <= 1.0 for p in body["predictions"])
    # A batch scores each review exactly as a single request does.
    single = real_client.post("/predict", json={"text": texts[1]}).get_json()
    assert body["predictions"][1]["score"] == pytest.approx(single["score"], abs=1e-5)


# --- readiness -----------------------------------------------------------------------------------------------


def test_predict_is_503_without_a_model_and_the_app_port_has_no_operator_paths():
    client = create_app({}).test_client()
    assert_error(client.post("/predict", json={"text": "fine"}), 503, "not_ready")
    # /health, /metrics and /openapi.json are on the ops port only (workload.serving.ops): not public.
    for path in ("/health", "/health/live", "/metrics", "/openapi.json"):
        assert_error(client.get(path), 404, "not_found")


def test_a_missing_bundle_keeps_the_app_not_ready_and_logs_why_once(tmp_path, caplog):
    bundle = tmp_path / "no-such-bundle"
    app = create_app({"MODEL_URI": str(bundle), "MODEL_RETRY_SECONDS": 0.05})
    holder = model_holder(app)
    assert not any(holder.load_once() for _ in range(3))
    assert holder.predictor is None and holder.reason.startswith("model not ready:")
    # Clients get a generic reason; the bundle's location is only in the log, and retries do not flood it.
    error = assert_error(app.test_client().post("/predict", json={"text": "fine"}), 503, "not_ready")
    assert error["message"] == "model not ready" and str(tmp_path) not in json.dumps(error)
    failures = model_failures(caplog)
    assert len(failures) == 1 and "\n" not in failures[0].getMessage() and str(bundle) in failures[0].getMessage()


def test_load_until_ready_keeps_the_worker_alive_and_stops_when_asked(tmp_path):
    """A worker retries a missing bundle before it accepts connections: it must heartbeat meanwhile (or the
    gunicorn master kills it after its timeout) and give up when the worker is told to stop."""
    holder = model_holder(create_app({"MODEL_URI": str(tmp_path / "missing"), "MODEL_RETRY_SECONDS": 0.05}))
    beats: list[int] = []
    deadline = time.monotonic() + 10  # a loader that never heartbeats fails here instead of retrying forever

    def keep_going() -> bool:
        return len(beats) < 5 and time.monotonic() < deadline

    assert holder.load_until_ready(keep_going=keep_going, heartbeat=lambda: beats.append(1)) is False
    assert len(beats) == 5


def test_a_tampered_bundle_is_never_served(tiny_bundle, tmp_path, caplog):
    import shutil

    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    weights = next(path for path in bundle.iterdir() if path.suffix == ".safetensors")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte
    weights.write_bytes(bytes(data))
    app = create_app({"MODEL_URI": str(bundle), "MODEL_RETRY_SECONDS": 0.05})
    assert not model_holder(app).load_once()
    assert model_holder(app).predictor is None
    assert_error(app.test_client().post("/predict", json={"text": "The movie was amazing!"}), 503, "not_ready")
    failures = model_failures(caplog)
    assert len(failures) == 1 and weights.name in failures[0].getMessage()


def test_a_model_failing_its_self_test_is_not_activated():
    class BrokenPredictor(KeywordPredictor):
        def predict(self, texts):
            return [Prediction("maybe", 2.0) for _ in texts]

    app = create_app({})
    with pytest.raises(Exception, match="invalid prediction"):
        model_holder(app).activate(BrokenPredictor(), load_seconds=0.1)
    assert_error(app.test_client().post("/predict", json={"text": "fine"}), 503, "not_ready")


@pytest.mark.parametrize("bad_score", [math.nan, math.inf, -math.inf])
def test_a_non_finite_score_is_never_emitted(app, caplog, bad_score):
    """A model that passed its self-test can still return NaN for some word (a NaN weight): NaN is not JSON."""

    class NonFiniteForSomeWords(KeywordPredictor):
        def predict(self, texts):
            return [
                Prediction("positive", bad_score) if "cursed" in t else p
                for t, p in zip(texts, super().predict(texts), strict=True)
            ]

    model_holder(app).activate(NonFiniteForSomeWords(), load_seconds=0.01)
    client = app.test_client()
    assert_error(client.post("/predict", json={"texts": ["amazing", "cursed word"]}), 503, "not_ready")
    assert client.post("/", data={"text": "cursed"}).status_code == 503
    assert client.post("/predict", json={"text": "amazing"}).status_code == 200
    assert any("non-finite" in r.getMessage() for r in caplog.records if r.levelname == "ERROR")


# --- /predict contract and error paths ------------------------------------------------------------------------


def test_predict_shapes(client):
    assert client.post("/predict", json={"text": "amazing"}).get_json() == {
        "label": "positive",
        "score": 0.9,
        "model_version": "fake-v1",
    }
    assert client.post("/predict", json={"texts": ["amazing", "meh"]}).get_json() == {
        "predictions": [{"label": "positive", "score": 0.9}, {"label": "negative", "score": 0.2}],
        "model_version": "fake-v1",
    }


@pytest.mark.parametrize("body", [b"{", b"not json", b'{"text": "a"', b"\xff\xfe\x00", b"[" * 100_000])
def test_malformed_json_is_400(app, body):
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20  # let the deeply nested body through to the parser
    assert_error(app.test_client().post("/predict", data=body, content_type="application/json"), 400, "malformed_json")


@pytest.mark.parametrize(
    "content_type", [None, "text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
def test_wrong_content_type_is_415(client, content_type):
    response = client.post("/predict", data='{"text": "fine"}', content_type=content_type)
    assert_error(response, 415, "unsupported_media_type")


def test_json_with_charset_is_accepted(client):
    response = client.post("/predict", data=b'{"text": "amazing"}', content_type="application/json; charset=utf-8")
    assert response.status_code == 200


def test_body_over_the_limit_is_413(client):
    body = json.dumps({"text": "x" * 5000})
    assert_error(client.post("/predict", data=body, content_type="application/json"), 413, "payload_too_large")


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "missing field"),
        ([], "JSON object"),
        ("text", "JSON object"),
        (None, "JSON object"),
        ({"text": ""}, "must not be empty"),
        ({"text": "   \n\t"}, "must not be empty"),
        ({"text": 5}, "must be a string"),
        ({"text": None}, "must be a string"),
        ({"text": ["a"]}, "must be a string"),
        ({"text": "x" * 51}, "longer than 50"),
        ({"text": "a", "texts": ["b"]}, "not both"),
        ({"text": "a", "extra": 1}, "unknown field"),
        ({"texts": []}, "must not be empty"),
        ({"texts": "abc"}, "array of strings"),
        ({"texts": ["a", 1]}, "texts[1] must be a string"),
        ({"texts": ["a", ""]}, "texts[1] must not be empty"),
        ({"texts": ["a", "b", "c", "d"]}, "maximum batch is 3"),
    ],
)
def test_schema_errors_are_422(client, body, message):
    response = client.post("/predict", data=json.dumps(body), content_type="application/json")
    error = assert_error(response, 422, "validation_error")
    assert message in error["message"]


def test_lone_surrogates_are_422_not_500(client):
    response = client.post("/predict", data=b'{"text": "bad \\ud800 text"}', content_type="application/json")
    assert "valid Unicode" in assert_error(response, 422, "validation_error")["message"]


def test_unknown_path_is_404_and_wrong_method_is_405(client):
    assert_error(client.get("/nowhere"), 404, "not_found")
    response = client.get("/predict")
    assert_error(response, 405, "method_not_allowed")
    assert "POST" in response.headers["Allow"]
    assert_error(client.delete("/"), 405, "method_not_allowed")


class ExplodingPredictor(KeywordPredictor):
    """Raises an unexpected error for the text "explode" (after passing its self-test)."""

    def predict(self, texts):
        if texts == ["explode"]:
            raise RuntimeError("secret internals")
        return super().predict(texts)


def test_an_unexpected_exception_is_a_json_500_without_internals(app):
    model_holder(app).activate(ExplodingPredictor(), load_seconds=0.01)
    response = app.test_client().post("/predict", json={"text": "explode"})
    error = assert_error(response, 500, "internal_error")
    assert "secret" not in error["message"]


# --- metrics, OpenAPI, page ----------------------------------------------------------------------------------


def _sample(text: str, name: str, **labels: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return 0.0


def test_metrics_count_requests_labels_batches_and_latency(client):
    before = render_metrics()[0].decode()
    client.post("/predict", json={"texts": ["amazing", "meh", "amazing"]})
    client.post("/predict", json={"text": ""})
    client.get("/no/such/path/123")
    body, content_type = render_metrics()
    assert content_type.startswith("text/plain")
    after = body.decode()

    def delta(name: str, **labels: str) -> float:
        return _sample(after, name, **labels) - _sample(before, name, **labels)

    assert delta("sentiment_http_requests_total", endpoint="/predict", status="200") == 1
    assert delta("sentiment_http_requests_total", endpoint="/predict", status="422") == 1
    # Unknown paths share one label value, so scanners cannot create unbounded time series.
    assert delta("sentiment_http_requests_total", endpoint="unmatched", status="404") == 1
    assert delta("sentiment_predictions_total", label="positive") == 2
    assert delta("sentiment_predictions_total", label="negative") == 1
    assert delta("sentiment_batch_size_sum") == 3
    assert delta("sentiment_http_request_duration_seconds_count", endpoint="/predict") == 2
    assert _sample(after, "sentiment_model_load_seconds", version="fake-v1") == pytest.approx(0.01)
    assert _sample(after, "sentiment_model_ready", version="fake-v1") == 1
    assert _sample(after, "sentiment_http_requests_in_progress") == 0  # scrapes are on the ops port


def test_openapi_document_reflects_the_configured_limits():
    document = openapi_document(ServeSettings.from_mapping({"MAX_BATCH": 3, "MAX_TEXT_CHARS": 50}))
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {"/predict", "/"}, "the public app port's paths only"
    schemas = document["components"]["schemas"]
    assert schemas["BatchRequest"]["properties"]["texts"]["maxItems"] == 3
    assert schemas["SingleRequest"]["properties"]["text"]["maxLength"] == 50


def test_page_renders_a_form_that_works_without_js(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert '<form id="review-form" method="post" action="/"' in html and 'name="text"' in html
    result = client.post("/", data={"text": "an amazing film"})
    assert result.status_code == 200
    assert '<span id="label">positive</span>' in result.get_data(as_text=True)


def test_page_form_errors_are_rendered_and_escaped(client):
    empty = client.post("/", data={"text": " "})
    assert empty.status_code == 422 and "must not be empty" in empty.get_data(as_text=True)
    hostile = client.post("/", data={"text": "<script>alert(1)</script>"})
    assert "<script>alert(1)</script>" not in hostile.get_data(as_text=True)
    assert "&lt;script&gt;" in hostile.get_data(as_text=True)


def test_page_static_assets_are_served(client):
    assert client.get("/static/app.js").status_code == 200
    assert client.get("/static/style.css").status_code == 200


def test_bad_limit_settings_are_a_clear_error():
    from workload.errors import WorkloadError

    with pytest.raises(WorkloadError, match="MAX_BATCH must be a positive integer"):
        create_app({"MAX_BATCH": "lots"})


# --- security headers, redirects ------------------------------------------------------------------------------


def test_every_response_carries_the_security_headers(app):
    model_holder(app).activate(ExplodingPredictor(), load_seconds=0.01)
    client = app.test_client()
    responses = [
        client.get("/"),
        client.get("/static/app.js"),
        client.post("/predict", json={"text": "amazing"}),
        client.post("/predict", json={"text": ""}),
        client.get("/nowhere"),
        client.get("/static//app.js"),  # a redirect
        client.post("/predict", json={"text": "explode"}),
    ]
    assert [r.status_code for r in responses] == [200, 200, 200, 422, 404, 308, 500]
    for response in responses:
        assert {name: response.headers.get(name) for name in SECURITY_HEADERS} == SECURITY_HEADERS
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert "'unsafe-inline'" not in csp and "frame-ancestors 'none'" in csp and "default-src 'none'" in csp


@pytest.mark.parametrize(("path", "location"), [("/static//app.js", "/static/app.js"), ("//", "/")])
def test_redirects_never_reflect_the_host_header(client, path, location):
    """Werkzeug's slash-merging redirect builds an absolute URL from the Host header; a forged Host must not
    send the browser elsewhere."""
    response = client.get(path, headers={"Host": "evil.example"})
    assert response.status_code == 308 and response.headers["Location"] == location


@pytest.mark.parametrize(
    ("location", "relative"),
    [
        ("http://evil.example/a?b=1", "/a?b=1"),
        ("http://evil.example//evil.example/x", "/evil.example/x"),
        ("/\\evil.example", "/evil.example"),
        ("https://h", "/"),
    ],
)
def test_relative_location_never_names_another_host(location, relative):
    assert relative_location(location) == relative
