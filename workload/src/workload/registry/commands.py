"""`python -m workload models ...`: list, show, compare, gate and promote bundles in the registry.

The gate's and promote's last stdout line is one JSON object (`{"passed": ..., "reasons": [...], ...}`); their
exit status is 0 when the gate passes, 3 when it fails and 1 on an error (bad input, unreachable storage).
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

from workload import storage
from workload.registry.catalog import (
    GATE_SUFFIX,
    MODELS_URI_VARIABLE,
    check_version,
    find_model,
    format_table,
    list_models,
    resolve_models_uri,
    sidecar_uri,
    write_json,
)
from workload.registry.gate import GateThresholds, run_gate
from workload.registry.stackfile import read_model_version, stack_file, write_model_version

GATE_FAILED = 3


def bundle_uri(reference: str, models_uri: str | None) -> str:
    """A bundle URI as given, or a version (folder name) under the models URI."""
    if storage.is_s3(reference) or "/" in reference:
        return reference
    return storage.join(resolve_models_uri(models_uri), check_version(reference))


def run_list(args: argparse.Namespace) -> int:
    records = list_models(resolve_models_uri(args.models_uri))
    print(json.dumps([record.as_dict() for record in records]) if args.json else format_table(records))
    return 0


def run_show(args: argparse.Namespace) -> int:
    print(json.dumps(find_model(resolve_models_uri(args.models_uri), args.version).as_dict(), indent=2))
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from workload.bundle.predictor import Predictor
    from workload.data.processed import open_processed
    from workload.errors import WorkloadError
    from workload.registry.gate import score

    predictors = [Predictor.load(bundle_uri(ref, args.models_uri)) for ref in (args.candidate, args.baseline)]
    with open_processed(args.data) as data:
        scored, reasons = score(predictors, data, args.split)
    if scored is None:
        raise WorkloadError(reasons[0])
    candidate, baseline = scored.evaluations
    difference = {key: candidate[key] - baseline[key] for key in ("accuracy", "f1", "precision", "recall")}
    for key, value in difference.items():
        print(f"{key:>9}: {candidate[key]:.4f} vs {baseline[key]:.4f}  ({value:+.4f})")
    print(json.dumps({"split": scored.split, "n": len(scored.reviews), "candidate": candidate,
                      "baseline": baseline, "difference": difference}))  # fmt: skip
    return 0


def gate(args: argparse.Namespace, candidate: str, baseline: str | None, data: str) -> dict:
    thresholds = GateThresholds(
        max_accuracy_drop=args.max_accuracy_drop, max_latency_ratio=args.max_latency_ratio,
        min_accuracy=args.min_accuracy, latency_rounds=args.latency_rounds,
    )  # fmt: skip
    return run_gate(candidate, baseline, data, thresholds, args.split)


def run_gate_command(args: argparse.Namespace) -> int:
    candidate = bundle_uri(args.candidate, args.models_uri)
    baseline = bundle_uri(args.baseline, args.models_uri) if args.baseline else None
    result = gate(args, candidate, baseline, args.data)
    if args.record:
        write_json(sidecar_uri(candidate, GATE_SUFFIX), result)
    print(json.dumps(result))
    return 0 if result["passed"] else GATE_FAILED


def run_promote(args: argparse.Namespace) -> int:
    version = check_version(args.version)
    path = stack_file(args.project_dir, args.stack)
    models_uri = resolve_models_uri(args.models_uri)
    candidate = find_model(models_uri, version)
    serving = read_model_version(path)
    baseline_uri = storage.join(models_uri, serving)
    # The stack serves no bundle from this registry yet (e.g. the `bootstrap` placeholder): a first model.
    baseline = baseline_uri if storage.list_names(baseline_uri) else None
    data = args.data or candidate.data_uri
    result = gate(args, candidate.uri, baseline, data)
    result.update(stack=args.stack, stack_file=str(path), serving_version=serving, version=candidate.version)
    if result["passed"]:
        write_model_version(path, candidate.version)
    print(json.dumps(result))
    return 0 if result["passed"] else GATE_FAILED


def configure_parser(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(dest="models_command", required=True, metavar="SUBCOMMAND")

    def command(name: str, help_text: str, handler: Callable[[argparse.Namespace], int]) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.set_defaults(handler=handler)
        sub.add_argument(
            "--models-uri", help=f"the registry: s3://bucket/models or a local folder (default: ${MODELS_URI_VARIABLE})"
        )
        return sub

    listing = command("list", "the bundles in the registry, newest first", run_list)
    listing.add_argument("--json", action="store_true", help="one JSON array instead of a table")
    show = command("show", "one bundle's registry record as JSON", run_show)
    show.add_argument("version", metavar="VERSION", help="folder name under models/ or the manifest's version id")

    compare = command("compare", "evaluate two bundles on the same split and print the difference", run_compare)
    compare.add_argument("candidate", metavar="CANDIDATE", help="bundle URI or version")
    compare.add_argument("baseline", metavar="BASELINE", help="bundle URI or version")
    _data_arguments(compare, required=True)

    gate_parser = command("gate", "may CANDIDATE replace BASELINE? exit 0 pass, 3 fail, 1 error", run_gate_command)
    gate_parser.add_argument("--candidate", required=True, help="bundle URI or version")
    gate_parser.add_argument("--baseline", help="bundle URI or version; none: the first model, held to --min-accuracy")
    gate_parser.add_argument(
        "--record", action="store_true", help=f"write the verdict next to the candidate (<bundle>{GATE_SUFFIX})"
    )
    _data_arguments(gate_parser, required=True)
    _threshold_arguments(gate_parser)

    promote = command("promote", "gate VERSION against the stack's modelVersion, then set modelVersion", run_promote)
    promote.add_argument("version", metavar="VERSION", help="folder name under models/")
    promote.add_argument("--stack", required=True, help="edits Pulumi.<stack>.yaml (no git commands are run)")
    promote.add_argument("--project-dir", type=Path, default=Path(), help="the Pulumi project (default: .)")
    _data_arguments(promote, required=False)
    _threshold_arguments(promote)


def _data_arguments(parser: argparse.ArgumentParser, *, required: bool) -> None:
    parser.add_argument(
        "--data", required=required,
        help="processed data URI both models were trained on" + ("" if required else " (default: the candidate's)"),
    )  # fmt: skip
    parser.add_argument(
        "--split", choices=("auto", "test", "validation"), default="auto",
        help="auto (default): test when the data has one, else the validation carve-out",
    )  # fmt: skip


def _threshold_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = GateThresholds()
    options = (
        ("--max-accuracy-drop", float, "D", defaults.max_accuracy_drop, "largest allowed accuracy drop"),
        ("--max-latency-ratio", float, "R", defaults.max_latency_ratio, "largest allowed p99 ratio to the baseline"),
        ("--min-accuracy", float, "A", defaults.min_accuracy, "floor for a first model, without a baseline"),
        ("--latency-rounds", int, "N", defaults.latency_rounds, "timed single-review predictions per model"),
    )
    for flag, kind, metavar, default, help_text in options:
        parser.add_argument(flag, type=kind, default=default, metavar=metavar, help=f"{help_text} (default {default})")
