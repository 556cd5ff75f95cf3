"""The model registry: `models list/show/compare/gate/promote` on a synthetic corpus hard enough to tell a model
trained on 1 % of it from one trained on all of it (the default corpus is learnt from four reviews)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import boto3
import pytest
from workload.bundle.predictor import Predictor
from workload.cli import main
from workload.registry.stackfile import write_model_version
from workload_devtools.synthetic import write_aclimdb_tarball

STACK_FILE = """\
# Dev: cheap and disposable.
config:
  aws:region: eu-west-1
  imdb-sentiment:forceDestroy: true
  imdb-sentiment:modelVersion: {version}  # promoted by `models promote`
  imdb-sentiment:trainingEpochs: 2
"""


def last_json_line(output: str) -> dict:
    return json.loads(output.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Processed data and a models folder with `full` (seed 0), `retrain` (seed 1) and `weak` (1 % of the data)."""
    root = tmp_path_factory.mktemp("registry")
    tarball = write_aclimdb_tarball(root / "hard.tar.gz", n_train=200, n_test=100, n_unsup=0, seed=0, polar_rate=0.1)
    data, models = root / "data", root / "models"
    assert main(["ingest", "--source", str(tarball), "--output", str(data)]) == 0
    for name, options in {
        "full": ["--seed", "0"],
        "retrain": ["--seed", "1"],
        "weak": ["--seed", "0", "--train-fraction", "0.01"],
    }.items():
        assert main(["train", "--data", str(data), "--output", str(models / name), "--threads", "1", *options]) == 0
    return {"data": data, "models": models, "root": root}


def gate(registry: dict[str, Path], candidate: str, baseline: str | None, capsys, *extra: str) -> tuple[int, dict]:
    models = registry["models"]
    baseline_args = ["--baseline", str(models / baseline)] if baseline else []
    arguments = ["--candidate", str(models / candidate), *baseline_args, "--data", str(registry["data"]), *extra]
    capsys.readouterr()
    status = main(["models", "gate", *arguments])
    return status, last_json_line(capsys.readouterr().out)


def test_the_gate_rejects_a_model_trained_on_1_percent_of_the_data(registry, capsys):
    status, result = gate(registry, "weak", "full", capsys)

    assert (status, result["passed"]) == (3, False)
    assert result["split"] == "test" and result["n"] == 200
    assert result["accuracy_drop"] > 0.1  # the corpus separates them by far more than the allowed 0.005
    assert any("below the baseline's" in reason for reason in result["reasons"]), result["reasons"]


def test_the_gate_accepts_a_retrain_with_another_seed(registry, capsys):
    status, result = gate(registry, "retrain", "full", capsys)

    assert (status, result["passed"], result["reasons"]) == (0, True, [])
    assert result["accuracy_drop"] <= 0.005 and result["latency_ratio"] <= 1.5
    for role in ("candidate", "baseline"):
        assert 0 < result[role]["p50_ms"] <= result[role]["p99_ms"]
    assert result["latency_rounds"] == 2000 and "interleaving" in result["latency_method"]


def test_the_gate_rejects_a_candidate_slower_than_allowed(registry, capsys):
    status, result = gate(registry, "retrain", "full", capsys, "--max-latency-ratio", "0.5")  # twice as fast: no

    assert (status, len(result["reasons"])) == (3, 1)
    assert result["reasons"][0].startswith(
        f"p99 latency is {result['latency_ratio']:.2f}x the baseline's (allowed 0.5x)"
    )


def test_a_first_model_is_held_to_the_absolute_floor(registry, capsys):
    assert gate(registry, "full", None, capsys)[0] == 0
    status, result = gate(registry, "weak", None, capsys)
    assert (status, result["min_accuracy"]) == (3, 0.88)
    assert result["reasons"][0].startswith("no baseline: accuracy ")


def test_the_gate_refuses_models_trained_on_other_data(registry, tmp_path, capsys):
    other = tmp_path / "other"  # the same corpus, sampled: another data set, whose validation split is not held out
    assert (
        main(["ingest", "--source", str(registry["root"] / "hard.tar.gz"), "--output", str(other), "--sample", "50"])
        == 0
    )
    capsys.readouterr()
    status = main(["models", "gate", "--candidate", str(registry["models"] / "retrain"),
                   "--baseline", str(registry["models"] / "full"), "--data", str(other)])  # fmt: skip

    result = last_json_line(capsys.readouterr().out)
    assert (status, result["passed"]) == (3, False)
    assert len(result["reasons"]) == 2 and all("not held out" in reason for reason in result["reasons"])


def test_a_reingest_of_the_same_source_is_the_same_data(registry, tmp_path, capsys):
    again = tmp_path / "again"
    assert main(["ingest", "--source", str(registry["root"] / "hard.tar.gz"), "--output", str(again)]) == 0
    assert (again / "manifest.json").read_bytes() == (registry["data"] / "manifest.json").read_bytes()


def test_a_tampered_candidate_fails_the_gate_and_a_missing_one_is_an_error(registry, tmp_path, capsys):
    tampered = tmp_path / "tampered"
    shutil.copytree(registry["models"] / "retrain", tampered)
    with (tampered / "config.json").open("a") as config:
        config.write(" ")
    data = str(registry["data"])

    assert main(["models", "gate", "--candidate", str(tampered), "--data", data]) == 3
    assert "the candidate does not verify: " in last_json_line(capsys.readouterr().out)["reasons"][0]
    assert main(["models", "gate", "--candidate", str(tmp_path / "nothing"), "--data", data]) == 1
    assert capsys.readouterr().err == f"error: no model bundle at {tmp_path / 'nothing'}\n"


def test_list_shows_every_bundle_newest_first_with_its_figures(registry, capsys):
    models = str(registry["models"])
    capsys.readouterr()
    assert main(["models", "list", "--models-uri", models, "--json"]) == 0
    records = json.loads(capsys.readouterr().out)

    assert sorted(record["version"] for record in records) == ["full", "retrain", "weak"]
    assert [r["created_at"] for r in records] == sorted((r["created_at"] for r in records), reverse=True)
    for record in records:
        assert record["split"] == "validation" and record["n"] == 40 and 0 < record["accuracy"] <= 1
        assert record["size_bytes"] == sum(p.stat().st_size for p in (registry["models"] / record["version"]).iterdir())
        assert len(record["data_manifest_sha256"]) == 64 and record["arch"] == "ngram"
    assert main(["models", "list", "--models-uri", models]) == 0
    header, *rows = capsys.readouterr().out.splitlines()
    assert header.split() == ["VERSION", "CREATED", "ARCH", "DATA", "COMMIT", "ACCURACY", "SPLIT", "N", "SIZE", "GATE"]
    assert [row.split()[0] for row in rows] == [record["version"] for record in records]


def test_show_finds_a_bundle_by_folder_or_manifest_version(registry, capsys, monkeypatch):
    monkeypatch.setenv("MODELS_URI", str(registry["models"]))
    assert main(["models", "show", "full"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert main(["models", "show", record["bundle_id"]]) == 0
    assert json.loads(capsys.readouterr().out) == record
    assert main(["models", "show", "nope"]) == 1
    assert capsys.readouterr().err.startswith("error: no model 'nope' under ")
    monkeypatch.delenv("MODELS_URI")
    assert main(["models", "list"]) == 1
    assert "pass --models-uri or set MODELS_URI" in capsys.readouterr().err


def test_compare_prints_the_difference_on_one_split(registry, capsys):
    models = registry["models"]
    assert main(["models", "compare", str(models / "weak"), str(models / "full"), "--data", str(registry["data"])]) == 0
    result = last_json_line(capsys.readouterr().out)
    assert result["split"] == "test" and result["n"] == 200
    assert result["difference"]["accuracy"] == pytest.approx(
        result["candidate"]["accuracy"] - result["baseline"]["accuracy"]
    )
    assert result["difference"]["accuracy"] < -0.1


def test_a_recorded_verdict_sits_next_to_an_s3_bundle_which_still_verifies(registry, s3_bucket, tmp_path, capsys):
    s3 = boto3.client("s3")
    for path in (registry["models"] / "retrain").iterdir():
        s3.upload_file(str(path), s3_bucket, f"models/retrain/{path.name}")
    models = f"s3://{s3_bucket}/models"

    status, result = gate(registry, "retrain", "full", capsys)  # local copies: only the record goes to S3
    assert status == 0
    assert main(["models", "gate", "--candidate", "retrain", "--models-uri", models, "--data", str(registry["data"]),
                 "--record", "--latency-rounds", "100"]) == 0  # fmt: skip
    capsys.readouterr()

    assert "models/retrain.gate.json" in [item["Key"] for item in s3.list_objects_v2(Bucket=s3_bucket)["Contents"]]
    assert main(["models", "list", "--models-uri", models]) == 0
    assert capsys.readouterr().out.splitlines()[1].split()[-1] == "passed"
    assert Predictor.load(f"{models}/retrain", cache_dir=tmp_path / "cache").version == result["candidate"]["version"]


def promote(registry: dict[str, Path], project: Path, version: str, capsys) -> tuple[int, dict]:
    capsys.readouterr()
    status = main(["models", "promote", "--stack", "dev", version, "--models-uri", str(registry["models"]),
                   "--project-dir", str(project), "--latency-rounds", "500"])  # fmt: skip
    return status, last_json_line(capsys.readouterr().out)


def test_promote_gates_against_the_serving_model_and_edits_only_that_line(registry, tmp_path, capsys):
    stack = tmp_path / "Pulumi.dev.yaml"
    stack.write_text(STACK_FILE.format(version="full"))

    status, result = promote(registry, tmp_path, "weak", capsys)
    assert (status, result["serving_version"]) == (3, "full")
    assert stack.read_text() == STACK_FILE.format(version="full")  # a failed gate changes nothing

    status, result = promote(registry, tmp_path, "retrain", capsys)
    assert (status, result["passed"]) == (0, True)
    assert result["baseline"]["uri"] == str(registry["models"] / "full")
    assert stack.read_text() == STACK_FILE.format(version="retrain")


def test_promote_over_a_placeholder_is_a_first_model(registry, tmp_path, capsys):
    stack = tmp_path / "Pulumi.dev.yaml"
    stack.write_text(STACK_FILE.format(version="bootstrap"))
    status, result = promote(registry, tmp_path, "full", capsys)
    assert (status, result["baseline"], result["min_accuracy"]) == (0, None, 0.88)
    assert stack.read_text() == STACK_FILE.format(version="full")


@pytest.mark.parametrize(
    ("stack_text", "error"),
    [
        ("config:\n  aws:region: eu-west-1\n", "must set modelVersion on exactly one line (found 0)"),
        ("config:\n  p:modelVersion: a\n  p:modelVersion: b\n", "(found 2)"),
    ],
)
def test_promote_refuses_a_stack_file_it_cannot_edit_safely(tmp_path, stack_text, error):
    from workload.errors import WorkloadError

    stack = tmp_path / "Pulumi.dev.yaml"
    stack.write_text(stack_text)
    with pytest.raises(WorkloadError, match=error.replace("(", r"\(").replace(")", r"\)")):
        write_model_version(stack, "v2")
    assert stack.read_text() == stack_text


@pytest.mark.parametrize("version", ["../prod", "a b", "x: y", "-rf"])
def test_promote_takes_only_a_plain_folder_name(version, tmp_path, capsys):
    stack = tmp_path / "Pulumi.dev.yaml"
    stack.write_text(STACK_FILE.format(version="full"))
    arguments = ["--stack", "dev", "--models-uri", str(tmp_path), "--project-dir", str(tmp_path), "--", version]
    assert main(["models", "promote", *arguments]) == 1
    assert capsys.readouterr().err.startswith(f"error: not a model version: {version!r}")
    assert stack.read_text() == STACK_FILE.format(version="full")
