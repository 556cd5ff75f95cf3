"""`python -m workload <command>`: ingest, train, evaluate, predict, serve, monitor, models, launch-training.

Only the standard library is imported at module level, so `--help` is instant and the gunicorn master never
imports torch; each command imports what it needs when it runs. A `WorkloadError` becomes one line on stderr
(`error: ...`) and exit status 1; Ctrl-C exits with 130; argument errors keep argparse's status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from workload.cloud import launch
from workload.errors import WorkloadError
from workload.logs import SDK_LOGGERS
from workload.monitoring import settings as monitor_settings
from workload.registry import commands as registry_commands
from workload.serving import server


def positive_int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return number


def run_ingest(args: argparse.Namespace) -> int:
    from workload.data.ingest import ingest

    manifest = ingest(args.source, args.output, sha256=args.sha256, sample=args.sample)
    counts = {name: entry["counts"] for name, entry in manifest["splits"].items()}
    print(json.dumps({"output": args.output, "source_sha256": manifest["source_sha256"], "counts": counts}))
    return 0


def run_train(args: argparse.Namespace) -> int:
    from workload import storage
    from workload.bundle.format import REPORT, write_bundle
    from workload.data.processed import open_processed
    from workload.modeling.train import TrainOptions, train
    from workload.monitoring.baseline import validation_baseline

    # Refuse before training, not after it: publishing refuses too (that covers a race), but only at the end.
    exists = bool(storage.list_names(args.output)) if storage.is_s3(args.output) else Path(args.output).exists()
    if exists:
        raise WorkloadError(f"refusing to overwrite existing {args.output}")
    options = TrainOptions(
        arch=args.arch, epochs=args.epochs, seed=args.seed, device=args.device, threads=args.threads,
        train_fraction=args.train_fraction,
    )  # fmt: skip
    with open_processed(args.data) as data:
        trained = train(data, options)
        manifest = write_bundle(
            args.output, trained=trained, data_manifest_sha256=data.manifest_sha256, data_uri=args.data,
            baseline=lambda predictor: validation_baseline(predictor, data),
        )  # fmt: skip
    summary = {key: trained.metrics[key] for key in ("validation_accuracy", "best_epoch", "training_seconds")}
    report = storage.join(args.output, REPORT)  # the training curves, for a person to open
    print(json.dumps({"model": args.output, "version": manifest["version"], "report": report, **summary}))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from workload.bundle.predictor import Predictor
    from workload.data.processed import open_processed
    from workload.modeling.evaluate import evaluate, resolve_split, reviews_for_split

    predictor = Predictor.load(args.model)
    with open_processed(args.data) as data:
        split = resolve_split(data, args.split)
        reviews = reviews_for_split(data, split, predictor)
    print(json.dumps(evaluate(predictor, reviews, split)))  # its `split` names the one used, `auto` resolved
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from workload.bundle.predictor import Predictor

    predictor = Predictor.load(args.model)
    for text, prediction in zip(args.texts, predictor.predict(args.texts), strict=True):
        print(f"{prediction.label}\t{prediction.score:.4f}\t{text}")
    return 0


def run_monitor(args: argparse.Namespace) -> int:
    from workload.monitoring.job import run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    from workload.data.ingest import OFFICIAL_URL  # stdlib-only module: keeps `--help` instant

    parser = argparse.ArgumentParser(prog="python -m workload", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        return sub

    ingest = command("ingest", "turn the aclImdb corpus into a processed data set", run_ingest)
    ingest.add_argument(
        "--source", default=OFFICIAL_URL,
        help="official URL (default, sha256-checked), local .tar.gz, extracted aclImdb/ folder, or s3:// tarball",
    )  # fmt: skip
    ingest.add_argument("--output", required=True, help="processed data URI: local folder or s3://bucket/prefix")
    ingest.add_argument("--sha256", help="expected sha256 of the source (checked for any source kind)")
    ingest.add_argument("--sample", type=positive_int, metavar="N", help="keep N reviews per split and label")

    train = command("train", "train a model and write a bundle", run_train)
    train.add_argument("--data", required=True, help="processed data URI (from `ingest`)")
    train.add_argument("--output", required=True, help="bundle URI to create (must not exist yet)")
    train.add_argument("--arch", choices=("ngram", "bilstm"), default="ngram", help="architecture (default ngram)")
    train.add_argument("--epochs", type=positive_int, help="maximum epochs (default: per architecture)")
    train.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    train.add_argument(
        "--train-fraction", type=float, default=1.0, metavar="F",
        help="train on this stratified fraction of the train split (default 1; the validation split is unchanged)",
    )  # fmt: skip
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto", help="default auto: CUDA if any")
    train.add_argument(
        "--threads", type=positive_int,
        help="torch CPU threads (default per architecture: 1 for ngram, every core this process may use for bilstm)",
    )  # fmt: skip

    evaluate = command("evaluate", "score a bundle on a labelled split; last stdout line is JSON", run_evaluate)
    evaluate.add_argument("--model", required=True, help="bundle URI")
    evaluate.add_argument("--data", required=True, help="processed data URI")
    evaluate.add_argument(
        "--split", choices=("auto", "test", "validation", "train"), default="auto",
        help="validation = the carve-out of train the model did not train on; auto (default) = test when the data "
        "has a test split, else validation; the JSON's `split` names the one used",
    )  # fmt: skip

    predict = command("predict", "print label and P(positive) for each text", run_predict)
    predict.add_argument("--model", required=True, help="bundle URI")
    predict.add_argument("texts", nargs="+", metavar="TEXT", help="review text")

    monitor = command(
        "monitor", "compare a model's captured traffic with its baseline; last stdout line is JSON", run_monitor
    )
    monitor_settings.configure_parser(monitor, positive_int)
    server.configure_parser(command("serve", "run the inference API under gunicorn", server.run))
    launch.configure_parser(command("launch-training", "start a training run on the stack's EC2", launch.run))
    registry_help = "the model registry: list, show, compare, gate, promote"
    registry_commands.configure_parser(commands.add_parser("models", help=registry_help, description=registry_help))
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # our own progress at INFO; libraries only from WARNING
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("workload").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    for name in SDK_LOGGERS:  # set on the loggers themselves: basicConfig is a no-op where logging is set up
        logging.getLogger(name).setLevel(logging.WARNING)
    try:
        return args.handler(args)
    except WorkloadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
