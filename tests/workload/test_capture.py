"""Data capture in the API, on moto: what is recorded and where, that a request never waits on or fails because
of capture (destination down, buffer full), and that buffered records are written out on shutdown."""

from __future__ import annotations

import gzip
import json
import re
import threading

import boto3
import numpy as np
import pytest
from workload.data.ingest import clean_text
from workload.serving import capture
from workload.serving.app import create_app, model_holder
from workload.serving.metrics import CAPTURE_RECORDS
from workload.serving.ops import render_metrics
from workload.serving.routes import CAPTURE_KEY
from workload_devtools.ports import free_loopback_port

REVIEWS = ["A wonderful, moving film.", "Dull and far too long. Café scenes aside, nothing works.", "zxqv qqzx"]
KEY = re.compile(
    r"capture/model_version=(?P<version>[^/]+)/date=\d{4}-\d\d-\d\d/hour=\d\d/(?P<host>[^/]+)-(?P<pid>\d+)-[0-9a-f]{32}\.jsonl\.gz"
)


def dropped(outcome: str) -> float:
    return CAPTURE_RECORDS.labels(outcome)._value.get()


def serving_app(tiny_bundle, **config):
    app = create_app({"MODEL_URI": str(tiny_bundle), **config})
    assert model_holder(app).load_once(), model_holder(app).reason
    return app


def captured(bucket: str) -> dict[str, list[dict]]:
    client = boto3.client("s3")
    objects = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    return {
        item["Key"]: [
            json.loads(line)
            for line in gzip.decompress(client.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()).splitlines()
        ]
        for item in objects
    }


def test_every_sampled_request_is_recorded_with_its_features_and_flushed_on_shutdown(tiny_bundle, s3_bucket):
    app = serving_app(tiny_bundle, CAPTURE_PERCENT="100", CAPTURE_URI=f"s3://{s3_bucket}/capture/")
    client = app.test_client()
    single = client.post("/predict", json={"text": REVIEWS[0]}, headers={"X-Request-Id": "req-42"})
    batch = client.post("/predict", json={"texts": REVIEWS[1:]})
    assert single.status_code == batch.status_code == 200
    assert single.headers["X-Request-Id"] == "req-42"
    generated = batch.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert captured(s3_bucket) == {}  # buffered, not yet written: the requests did not wait on S3
    capture.close_all()  # what gunicorn's worker_exit hook calls on a graceful stop
    objects = captured(s3_bucket)
    assert len(objects) == 1
    key, records = next(iter(objects.items()))
    version = single.get_json()["model_version"]
    assert KEY.fullmatch(key) and KEY.fullmatch(key)["version"] == version
    assert [r["request_id"] for r in records] == ["req-42", generated, generated]
    assert [r["text"] for r in records] == REVIEWS
    assert [r["score"] for r in records] == [single.get_json()["score"]] + [
        p["score"] for p in batch.get_json()["predictions"]
    ]
    assert [r["non_ascii"] for r in records] == [False, True, False]
    assert records[2]["unknown_token_rate"] == 1.0 and records[2]["token_length"] == 2  # words never seen in training
    assert records[0]["token_length"] == 6 and records[0]["unknown_token_rate"] < 1.0
    assert all(r["model_version"] == version and r["time"].endswith("+00:00") for r in records)


def test_a_review_with_imdb_markup_is_captured_with_the_features_training_saw(tiny_bundle, tmp_path):
    from workload.bundle.predictor import Predictor

    raw = "A wonderful film.<br /><br />Moving, never dull.<BR>Café scenes aside<br/>, it works."
    app = serving_app(tiny_bundle, CAPTURE_PERCENT="100", CAPTURE_URI=str(tmp_path / "capture"))
    served = app.test_client().post("/predict", json={"text": raw}).get_json()
    capture.close_all()
    (written,) = (tmp_path / "capture").rglob("*.jsonl.gz")
    (record,) = [json.loads(line) for line in gzip.decompress(written.read_bytes()).splitlines()]
    # the baseline describes the validation split as `ingest` stored it: markup out
    predictor = Predictor.load(str(tiny_bundle))
    stored = predictor.token_stats([clean_text(raw)])
    assert (record["token_length"], record["unknown_token_rate"]) == (
        stored.lengths[0],
        pytest.approx(stored.unknown_rates[0]),
    )
    assert served["score"] == pytest.approx(predictor.predict([clean_text(raw)])[0].score)


def test_capture_text_false_keeps_the_features_but_not_the_text(tiny_bundle, s3_bucket):
    app = serving_app(tiny_bundle, CAPTURE_PERCENT="100", CAPTURE_URI=f"s3://{s3_bucket}/c", CAPTURE_TEXT="false")
    assert app.test_client().post("/predict", json={"text": REVIEWS[0]}).status_code == 200
    capture.close_all()
    (records,) = captured(s3_bucket).values()
    assert "text" not in records[0] and records[0]["token_length"] == 6


def test_a_client_request_id_that_is_not_a_plain_token_is_replaced(tiny_bundle):
    client = serving_app(tiny_bundle).test_client()
    answer = client.post("/predict", json={"text": "fine"}, headers={"X-Request-Id": "x" * 200})
    assert re.fullmatch(r"[0-9a-f]{32}", answer.headers["X-Request-Id"])


def test_zero_percent_records_nothing(tiny_bundle, s3_bucket):
    app = serving_app(tiny_bundle, CAPTURE_PERCENT="0", CAPTURE_URI=f"s3://{s3_bucket}/capture/")
    assert app.test_client().post("/predict", json={"text": REVIEWS[0]}).status_code == 200
    assert app.extensions[CAPTURE_KEY].writer is None
    capture.close_all()
    assert captured(s3_bucket) == {}


def test_no_request_fails_while_the_destination_is_down(tiny_bundle, s3_env, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{free_loopback_port()}")  # nothing listens
    app = serving_app(tiny_bundle, CAPTURE_PERCENT="100", CAPTURE_URI="s3://capture-bucket/capture/")
    monkeypatch.setattr(capture, "FLUSH_RECORDS", 10)  # write (and fail) while requests keep coming
    before = dropped("dropped_failed")
    client = app.test_client()
    statuses = [client.post("/predict", json={"text": f"{REVIEWS[0]} {i}"}).status_code for i in range(100)]
    capture.close_all()
    assert statuses == [200] * 100
    assert dropped("dropped_failed") - before == 100
    body, _ = render_metrics()  # what the ops port's /metrics serves
    assert 'sentiment_capture_records_total{outcome="dropped_failed"}' in body.decode()


def test_a_full_buffer_drops_and_counts_instead_of_waiting(tiny_bundle, tmp_path, monkeypatch):
    app = serving_app(tiny_bundle, CAPTURE_PERCENT="100", CAPTURE_URI=str(tmp_path / "capture"))
    writer = app.extensions[CAPTURE_KEY].writer
    stuck = threading.Event()
    monkeypatch.setattr(writer, "_flush", lambda partitions: stuck.wait(30))  # a writer that never finishes
    monkeypatch.setattr(capture, "BUFFER_BYTES", 5 * 400)  # room for about 5 records of this review
    monkeypatch.setattr(capture, "FLUSH_RECORDS", 1)
    before = dropped("dropped_full")
    client = app.test_client()
    statuses = [client.post("/predict", json={"text": REVIEWS[0]}).status_code for _ in range(20)]
    assert statuses == [200] * 20
    # at most two buffers' worth were kept: the one being written (stuck) and the one filling
    assert 20 - 2 * 5 <= dropped("dropped_full") - before < 20
    stuck.set()
    capture.close_all()


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"CAPTURE_PERCENT": "101", "CAPTURE_URI": "/tmp/c"}, "CAPTURE_PERCENT must be a number from 0 to 100"),
        ({"CAPTURE_PERCENT": "lots", "CAPTURE_URI": "/tmp/c"}, "CAPTURE_PERCENT must be a number from 0 to 100"),
        ({"CAPTURE_PERCENT": "5"}, "CAPTURE_URI is not set"),
        ({"CAPTURE_TEXT": "maybe"}, "CAPTURE_TEXT must be true or false"),
    ],
)
def test_bad_capture_settings_are_one_line_errors(config, message):
    from workload.errors import WorkloadError

    with pytest.raises(WorkloadError, match=message):
        create_app(config)


def test_the_features_captured_from_a_prediction_match_a_fresh_tokenization(tiny_bundle):
    from workload.bundle.predictor import Predictor

    predictor = Predictor.load(str(tiny_bundle))
    texts = [f"{REVIEWS[i % 3]} {'word ' * (i % 7)}" for i in range(1_100)]  # more than one predict chunk
    predictor.predict(texts)
    reused, fresh = predictor.last_encoding().stats(), predictor.token_stats(texts)
    assert reused.lengths.tolist() == fresh.lengths.tolist() and len(reused.lengths) == 1_100
    assert reused.unknown_rates.tolist() == fresh.unknown_rates.tolist()
    assert fresh.unknown_rates.max() == 1.0 > fresh.unknown_rates.min()  # "zxqv qqzx" is all unknown words
    predictor.predict(texts[:2])
    assert len(predictor.last_encoding().lengths) == 2  # only the latest call's texts


@pytest.mark.parametrize(
    ("flat", "lengths", "counts"),
    [
        ([1, 5, 1, 7], [3, 1], [2, 0]),  # a batch
        ([7, 1, 1], [3], [2]),  # one text, the API's usual request
        ([1, 1], [0, 2, 0], [0, 2, 0]),  # texts without tokens
        ([], [], []),
    ],
)
def test_unknown_tokens_are_counted_per_text(flat, lengths, counts):
    from workload.bundle.predictor import Encoding

    encoding = Encoding(np.array(flat, dtype=np.int64), np.array(lengths, dtype=np.int64), unknown_id=1)
    assert encoding.unknown_counts() == counts
    assert encoding.stats().unknown_rates.tolist() == [c / max(n, 1) for c, n in zip(counts, lengths, strict=True)]
