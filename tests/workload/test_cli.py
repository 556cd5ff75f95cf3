"""The command-line contract: --help everywhere, one-line errors, evaluate's JSON, and S3 end to end."""

from __future__ import annotations

import json
import logging
import re
import subprocess
import sys

import boto3
import pytest
import workload.modeling.train
from workload.cli import SDK_LOGGERS, main

COMMANDS = ["ingest", "train", "evaluate", "predict", "serve", "launch-training", "models"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert "usage:" in capsys.readouterr().out


def test_help_does_not_import_heavy_libraries():
    probe = "import sys; from workload.cli import build_parser; build_parser(); print(sorted(sys.modules))"
    loaded = json.loads(
        subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.replace(
            "'", '"'
        )
    )
    assert not {"torch", "tokenizers", "boto3", "numpy"} & set(loaded)


def test_argument_errors_keep_argparse_exit_status(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["train", "--data", "x"])  # --output missing
    assert exited.value.code == 2
    with pytest.raises(SystemExit):
        main(["ingest", "--output", "x", "--sample", "0"])
    assert "positive integer" in capsys.readouterr().err


def test_workload_errors_are_one_line_with_exit_1(tmp_path, capsys):
    assert main(["ingest", "--source", str(tmp_path / "missing.tar.gz"), "--output", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no such source") and err.count("\n") == 1
    assert main(["evaluate", "--model", str(tmp_path), "--data", str(tmp_path)]) == 1
    assert "error: no model bundle" in capsys.readouterr().err


def test_train_refuses_an_existing_output_before_training(tiny_bundle, processed_data, tmp_path, monkeypatch, capsys):
    def must_not_train(*args: object, **kwargs: object) -> None:
        raise AssertionError("train ran although its output exists")

    monkeypatch.setattr(workload.modeling.train, "train", must_not_train)
    empty = tmp_path / "empty"
    empty.mkdir()  # an existing folder, even an empty one, is refused at publish time too
    for output in (tiny_bundle, empty):
        assert main(["train", "--data", str(processed_data), "--output", str(output)]) == 1
        assert capsys.readouterr().err == f"error: refusing to overwrite existing {output}\n"


def last_json_line(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


def test_evaluate_prints_metrics_json_last(tiny_bundle, processed_data, capsys):
    # no --split: `auto` picks the test split, which this data has
    assert main(["evaluate", "--model", str(tiny_bundle), "--data", str(processed_data)]) == 0
    result = last_json_line(capsys.readouterr().out)
    assert result["n"] == 60 and result["split"] == "test"
    assert result["accuracy"] >= 0.9 and 0.0 <= result["f1"] <= 1.0
    matrix = result["confusion_matrix"]["matrix"]
    assert sum(map(sum, matrix)) == 60 and result["accuracy"] == (matrix[0][0] + matrix[1][1]) / 60
    assert result["examples_per_second"] > 0 and result["model_version"].startswith("ngram-")


def test_evaluate_validation_uses_the_training_carve_out(tiny_bundle, processed_data, capsys):
    assert main(["evaluate", "--model", str(tiny_bundle), "--data", str(processed_data), "--split", "validation"]) == 0
    metrics = json.loads((tiny_bundle / "metrics.json").read_text())
    result = last_json_line(capsys.readouterr().out)
    assert result["n"] == metrics["n_validation"]
    assert result["accuracy"] == pytest.approx(metrics["validation_accuracy"])


def test_evaluate_without_a_test_split(tiny_bundle, tmp_path, capsys):
    """`--split test` says there is none; `auto` (the default) falls back to validation and says so in its JSON."""
    from workload_devtools.synthetic import write_aclimdb_tarball

    tarball = write_aclimdb_tarball(tmp_path / "t.tar.gz", n_train=20, n_unsup=0, splits=("train",))
    data = str(tmp_path / "data")
    assert main(["ingest", "--source", str(tarball), "--output", data]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tiny_bundle), "--data", data, "--split", "test"]) == 1
    assert "has no test split" in capsys.readouterr().err
    for split_args in ([], ["--split", "auto"]):
        assert main(["evaluate", "--model", str(tiny_bundle), "--data", data, *split_args]) == 0
        result = last_json_line(capsys.readouterr().out)
        assert result["split"] == "validation" and 0 < result["n"] < 40  # a carve-out of the 40 train reviews


def test_predict_prints_label_and_score_per_text(tiny_bundle, capsys):
    assert main(["predict", "--model", str(tiny_bundle), "The movie was amazing!", "A dull, boring waste."]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split("\t")[0] for line in lines] == ["positive", "negative"]
    assert all(0.0 <= float(line.split("\t")[1]) <= 1.0 for line in lines)


# A record as the CLI formats it: "2026-01-01 12:00:00,123 INFO botocore.credentials: Found credentials ..."
SDK_INFO_LINE = re.compile(rf"^\S+ \S+ (DEBUG|INFO) ({'|'.join(SDK_LOGGERS)})[.:]", re.MULTILINE)


def test_sdk_loggers_stay_at_warning_even_under_an_info_root(synthetic_tarball, s3_bucket, monkeypatch, caplog):
    """The AWS SDK's INFO chatter would flood step logs; our own INFO progress must still come through."""
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # a fresh session logs its credentials lookup at INFO
    caplog.set_level(logging.INFO)  # root at INFO, as an embedding program (or pytest here) may set it
    data = f"s3://{s3_bucket}/processed"
    assert main(["ingest", "--source", str(synthetic_tarball), "--output", data]) == 0
    assert main(["train", "--data", data, "--output", f"s3://{s3_bucket}/models/v1", "--epochs", "1"]) == 0
    assert any(record.name.startswith("workload.") and record.levelno == logging.INFO for record in caplog.records)
    chatter = [record for record in caplog.records if record.name.startswith(SDK_LOGGERS)]
    assert [r.getMessage() for r in chatter if r.levelno < logging.WARNING] == []


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "workload", *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


@pytest.mark.integration
def test_ingest_train_evaluate_predict_against_s3(synthetic_tarball, embedded_s3, s3_bucket, tmp_path):
    env = {**embedded_s3.child_env(), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    boto3.client("s3").upload_file(str(synthetic_tarball), s3_bucket, "raw/aclImdb.tar.gz")
    data, model = f"s3://{s3_bucket}/processed", f"s3://{s3_bucket}/models/v1"

    ingested = run_cli(env, "ingest", "--source", f"s3://{s3_bucket}/raw/aclImdb.tar.gz", "--output", data)
    assert ingested.returncode == 0, ingested.stderr
    trained = run_cli(env, "train", "--data", data, "--output", model, "--epochs", "2")
    assert trained.returncode == 0, trained.stderr
    assert " INFO workload.modeling.train: " in trained.stderr  # our own progress is logged, the SDK's chatter is not
    assert not SDK_INFO_LINE.search(ingested.stderr + trained.stderr), trained.stderr
    keys = [item["Key"] for item in boto3.client("s3").list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert "processed/manifest.json" in keys and "models/v1/manifest.json" in keys
    assert "models/v1/weights.safetensors" in keys

    evaluated = run_cli(env, "evaluate", "--model", model, "--data", data, "--split", "auto")
    assert evaluated.returncode == 0, evaluated.stderr
    evaluation = last_json_line(evaluated.stdout)
    assert evaluation["split"] == "test" and evaluation["accuracy"] >= 0.9
    predicted = run_cli(env, "predict", "--model", model, "The movie was amazing!")
    assert predicted.returncode == 0 and predicted.stdout.startswith("positive\t")

    again = run_cli(env, "train", "--data", data, "--output", model, "--epochs", "1")
    assert again.returncode == 1 and "refusing to overwrite" in again.stderr
    missing = run_cli(env, "ingest", "--source", f"s3://{s3_bucket}/raw/nope.tar.gz", "--output", data + "2")
    assert missing.returncode == 1 and missing.stderr.startswith("error: no such S3 object")
