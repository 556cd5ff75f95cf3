"""Flask test-client tests: every route and every error path of the API."""

from __future__ import annotations

import json
import time

import pytest
from workload.bundle.predictor import Prediction
from workload.serving.app import create_app, model_holder
from workload.serving.errors import ERROR_CODES


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
    assert model_holder(app).wait_until_ready(timeout=60), model_holder(app).reason
    return app.test_client()


def wait_for_first_verdict(holder) -> None:
    """The first load attempt imports torch (seconds on a busy machine); wait until it has an outcome."""
    deadline = time.monotonic() + 60
    while holder.predictor is None and holder.reason == "model is loading":
        assert time.monotonic() < deadline, "the loader never finished its first attempt"
        time.sleep(0.05)


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


def test_health_is_ready_with_the_real_bundle(real_client):
    response = real_client.get("/health")
    assert response.status_code == 200
    assert response.get_json()["status"] == "ready" and response.get_json()["model_version"]


# --- readiness -----------------------------------------------------------------------------------------------


def test_health_is_503_with_a_reason_until_a_model_is_ready():
    client = create_app({}).test_client()
    response = client.get("/health")
    assert response.status_code == 503
    assert response.get_json() == {"status": "not_ready", "reason": "model not configured (set MODEL_URI)"}
    assert client.get("/health/live").status_code == 200
    assert_error(client.post("/predict", json={"text": "fine"}), 503, "not_ready")


def test_a_missing_bundle_keeps_the_app_not_ready_and_says_why(tmp_path, caplog):
    app = create_app({"MODEL_URI": str(tmp_path / "no-such-bundle"), "MODEL_RETRY_SECONDS": 0.05})
    holder = model_holder(app)
    wait_for_first_verdict(holder)
    time.sleep(0.3)  # a few retries happen meanwhile
    assert holder.predictor is None
    response = app.test_client().get("/health")
    assert response.status_code == 503
    assert response.get_json()["reason"].startswith("model not ready:")
    # Retries do not flood the log: one line per distinct failure.
    failures = [r for r in caplog.records if r.name == "workload.modeling.architectures" and r.levelname == "ERROR"]
    assert len(failures) == 1 and "\n" not in failures[0].getMessage()


def test_a_tampered_bundle_is_never_served(tiny_bundle, tmp_path, caplog):
    import shutil

    bundle = shutil.copytree(tiny_bundle, tmp_path / "bundle")
    weights = next(path for path in bundle.iterdir() if path.suffix == ".safetensors")
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # one flipped byte
    weights.write_bytes(bytes(data))
    app = create_app({"MODEL_URI": str(bundle), "MODEL_RETRY_SECONDS": 0.05})
    wait_for_first_verdict(model_holder(app))
    assert model_holder(app).predictor is None
    client = app.test_client()
    assert client.get("/health").status_code == 503
    assert "model not ready:" in client.get("/health").get_json()["reason"]
    assert_error(client.post("/predict", json={"text": "The movie was amazing!"}), 503, "not_ready")
    failures = [r for r in caplog.records if r.name == "workload.modeling.architectures" and r.levelname == "ERROR"]
    assert len(failures) == 1 and weights.name in failures[0].getMessage()


def test_a_model_failing_its_self_test_is_not_activated():
    class BrokenPredictor(KeywordPredictor):
        def predict(self, texts):
            return [Prediction("maybe", 2.0) for _ in texts]

    app = create_app({})
    with pytest.raises(Exception, match="invalid prediction"):
        model_holder(app).activate(BrokenPredictor(), load_seconds=0.1)
    assert app.test_client().get("/health").status_code == 503


def test_health_is_503_while_sibling_workers_are_still_loading(client, monkeypatch, tmp_path):
    # Under gunicorn each worker publishes its readiness in the shared metrics directory; here none has.
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    monkeypatch.setenv("SERVE_WORKER_COUNT", "2")
    response = client.get("/health")
    assert response.status_code == 503
    assert response.get_json() == {"status": "not_ready", "reason": "2 of 2 workers are still loading the model"}


def test_health_reports_the_version_when_ready(client):
    assert client.get("/health").get_json() == {"status": "ready", "model_version": "fake-v1"}
    assert client.get("/health/live").get_json() == {"status": "alive"}


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
    assert_error(client.delete("/health"), 405, "method_not_allowed")


def test_an_unexpected_exception_is_a_json_500_without_internals(app):
    class ExplodingPredictor(KeywordPredictor):
        def predict(self, texts):
            if texts == ["explode"]:
                raise RuntimeError("secret internals")
            return super().predict(texts)

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
    before = client.get("/metrics").get_data(as_text=True)
    client.post("/predict", json={"texts": ["amazing", "meh", "amazing"]})
    client.post("/predict", json={"text": ""})
    client.get("/no/such/path/123")
    response = client.get("/metrics")
    assert response.status_code == 200 and response.mimetype == "text/plain"
    after = response.get_data(as_text=True)

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
    assert _sample(after, "sentiment_http_requests_in_progress") == 1  # the scrape itself


def test_openapi_document_reflects_the_configured_limits(client):
    document = client.get("/openapi.json").get_json()
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) == {"/predict", "/health", "/health/live", "/metrics", "/openapi.json", "/"}
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
