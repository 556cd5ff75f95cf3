"""Fuzzing: no input, however malformed, gets a 5xx or a stack trace from the API.

Hypothesis throws thousands of arbitrary bodies, content types, methods and paths at the app, half of them
at `POST /predict` with a JSON content type, with the real model behind it so that odd Unicode reaches the
tokenizer. Then it sends malformed chunked framing over raw sockets to real gunicorn, where gunicorn's own
parse errors surface while the app reads the body. (The live-server test checks responses against
`/openapi.json` with schemathesis.)
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from workload.serving.app import create_app, model_holder
from workload.serving.headers import SECURITY_HEADERS
from workload_devtools.server_process import ServerProcess

FUZZ_CASES = 3000
CHUNKED_CASES = 600

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


# --- malformed chunked framing against real gunicorn -----------------------------------------------------------

size_tokens = st.sampled_from(
    ["zz", "", "-1", "0x10", " 5", "5 ", "ffffffffffffffffffff", "5;ext=1", "5;" + "e" * 2000, "5\x00", "١"]
)
line_ends = st.sampled_from(["", "\n", "\r", "XX", "\r\r\n"])
trailers = st.sampled_from(
    ["", "X-Checksum: abc\r\n", "no colon\r\n", "X-Big: " + "a" * 70_000 + "\r\n", ":\r\n", "\x00: x\r\n"]
)


@st.composite
def chunked_framing(draw: st.DrawFn) -> bytes:
    """A correct chunked encoding of a `/predict` body, then (mostly) one mutation of its framing."""
    payload = json.dumps({"text": draw(st.text(max_size=30))}).encode()
    cuts = sorted(set(draw(st.lists(st.integers(1, len(payload) - 1), max_size=3))))
    pieces = [payload[start:end] for start, end in zip([0, *cuts], [*cuts, len(payload)], strict=True)]
    frames = [f"{len(piece):x}".encode() + b"\r\n" + piece + b"\r\n" for piece in pieces]
    frames.append(b"0\r\n" + draw(trailers).encode() + b"\r\n")
    body = b"".join(frames)
    at = draw(st.integers(0, len(body)))
    mutation = draw(st.sampled_from(["none", "size", "line end", "delete", "insert", "truncate", "overflow"]))
    if mutation == "size":  # a bad size token in place of the first chunk's
        return draw(size_tokens).encode() + body[body.index(b"\r\n") :]
    if mutation == "line end":  # a CRLF replaced by something else
        crlfs = [i for i in range(len(body) - 1) if body[i : i + 2] == b"\r\n"]
        where = draw(st.sampled_from(crlfs))
        return body[:where] + draw(line_ends).encode() + body[where + 2 :]
    if mutation == "delete":
        return body[:at] + body[at + draw(st.integers(1, 4)) :]
    if mutation == "insert":
        return body[:at] + draw(st.binary(min_size=1, max_size=4)) + body[at:]
    if mutation == "truncate":  # the connection ends mid-body
        return body[:at]
    if mutation == "overflow":  # the first chunk longer than its size says
        data_start = body.index(b"\r\n") + 2
        return body[:data_start] + b"x" * draw(st.integers(1, 3)) + body[data_start:]
    return body


@pytest.fixture(scope="module")
def gunicorn(tiny_bundle, tmp_path_factory):
    log = tmp_path_factory.mktemp("fuzz-server") / "server.log"
    env = {"WEB_CONCURRENCY": "2", "MAX_BODY_BYTES": "512"}
    with ServerProcess(str(tiny_bundle), env={**os.environ, **env}, log_path=log) as server:
        server.wait_ready(timeout=60)
        yield server, log


def raw_exchange(port: int, request: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.sendall(request)
        sock.shutdown(socket.SHUT_WR)  # a body cut short ends here instead of waiting for the worker timeout
        response = b""
        while chunk := sock.recv(65536):
            response += chunk
    return response


def test_malformed_chunked_framing_never_gets_a_server_error(gunicorn):
    server, log = gunicorn
    head = (
        b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    )
    statuses: list[int] = []

    @settings(
        max_examples=CHUNKED_CASES,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=list(HealthCheck),
    )
    @given(framing=chunked_framing())
    def check(framing: bytes) -> None:
        response = raw_exchange(server.port, head + framing)
        status_line, *header_lines = response.partition(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        status = int(status_line.split(" ", 2)[1])
        statuses.append(status)
        assert status < 500, (framing[:200], response[:300])
        # Whether Flask answered or gunicorn did (the worker class adds them to gunicorn's own errors).
        assert {line.split(": ", 1)[0] for line in header_lines} >= set(SECURITY_HEADERS), response[:300]

    check()
    print(f"chunked fuzz: {len(statuses)} cases, statuses {sorted(set(statuses))}")
    assert len(statuses) >= CHUNKED_CASES and {200, 400} <= set(statuses)
    assert "Traceback" not in Path(log).read_text()
