"""Fuzzing: no input, however malformed, gets a 5xx or a stack trace from the API.

Hypothesis throws thousands of arbitrary bodies, content types, methods and paths at the app, half of them
at `POST /predict` with a JSON content type, with the real model behind it so that odd Unicode reaches the
tokenizer. (The live-server test checks responses against `/openapi.json` with schemathesis.)
"""

from __future__ import annotations

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from workload.serving.app import create_app, model_holder

FUZZ_CASES = 3000

json_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=40)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)
# Bodies near the contract are the interesting ones: right keys, wrong or odd values (incl. any Unicode).
near_contract = st.one_of(
    st.fixed_dictionaries({"text": json_values | st.text(max_size=300)}),
    st.fixed_dictionaries({"texts": st.lists(json_values | st.text(max_size=60), max_size=70) | json_values}),
    st.dictionaries(st.sampled_from(["text", "texts", "extra"]), json_values | st.text(), max_size=3),
    json_values,
)
json_bodies = near_contract.map(lambda value: json.dumps(value).encode())
raw_bodies = st.binary(max_size=300) | st.text(max_size=300).map(lambda s: s.encode("utf-8", "surrogatepass"))
content_types = st.sampled_from(
    ["application/json", "application/json; charset=utf-8", "application/problem+json", "text/plain",
     "application/x-www-form-urlencoded", "multipart/form-data", ""]
) | st.text(st.characters(min_codepoint=32, max_codepoint=255), max_size=20)  # fmt: skip
methods = st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"])
paths = st.sampled_from(["/predict", "/health", "/health/live", "/metrics", "/openapi.json", "/", "/static/app.js"]) | (
    # Not "//...": the test client would read that as a host name.
    st.text(alphabet="abc%.?&=", max_size=15).map(lambda s: "/predict/" + s if s.startswith("a") else "/" + s)
)

predict_requests = st.tuples(
    st.just("POST"), st.just("/predict"), json_bodies | raw_bodies, st.just("application/json") | content_types
)
any_requests = st.tuples(methods, paths, json_bodies | raw_bodies, content_types)


@pytest.fixture(scope="module")
def app(tiny_bundle):
    app = create_app({"MODEL_URI": str(tiny_bundle), "MAX_BODY_BYTES": 512, "MAX_BATCH": 8, "MAX_TEXT_CHARS": 200})
    assert model_holder(app).load_once(), model_holder(app).reason
    return app


def test_fuzzed_requests_never_get_a_server_error(app):
    client = app.test_client()
    seen = {"cases": 0, "statuses": set()}

    @settings(
        max_examples=FUZZ_CASES, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
    )
    @given(request=predict_requests | any_requests)
    def check(request: tuple[str, str, bytes, str]) -> None:
        method, path, body, content_type = request
        response = client.open(path, method=method, data=body, content_type=content_type or None)
        seen["cases"] += 1
        seen["statuses"].add(response.status_code)
        assert response.status_code < 500, (method, path, body, content_type, response.data)
        if response.status_code >= 400 and response.mimetype == "application/json" and method != "HEAD":
            assert set(response.get_json()["error"]) == {"code", "message"}
        assert b"Traceback" not in response.data

    check()
    print(f"fuzz: {seen['cases']} cases, statuses {sorted(seen['statuses'])}")
    assert seen["cases"] >= FUZZ_CASES
    # The generator reached the interesting outcomes, not only 404s.
    assert {200, 400, 404, 405, 413, 415, 422} <= seen["statuses"]
