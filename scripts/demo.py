"""`make demo`: the whole MLOps loop on this machine, on an embedded S3 instead of AWS.

Steps: start a moto S3 server on 127.0.0.1, create the data-lake bucket with the storage component's prefix
layout, upload the raw IMDB tarball to `raw/`, run the same `python -m workload ingest -> train -> evaluate`
commands as the EC2 training user data against `s3://` (the evaluation is recorded next to the bundle), train a
deliberately weaker model on 1 % of the data and show the quality gate rejecting it, list the model registry,
then serve the published bundle from S3 with gunicorn (capturing every request to `capture/`) and send one smoke
request. Then the monitoring loop: replay held-out reviews (the test split, else the validation carve-out)
through the API and run `monitor` on what was captured (no drift expected), then replay only the negative ones
and run it again (drift). Serve until Ctrl-C.

Settings (environment variables):
  IMDB_SOURCE   path or http(s) URL of the aclImdb tarball (default: the official Stanford URL, whose sha256
                ingest checks)
  DEMO_SAMPLE   keep N labelled reviews per split and label (`ingest --sample N`) for a quick tour
  DEMO_EPOCHS   training epochs (default: the workload's default)
  DEMO_REPLAY   requests per replayed stream (default 300; the monitor needs 200 records for a verdict)
  DEMO_EXIT=1   exit after the monitoring steps instead of serving until Ctrl-C
  DEMO_DIR      where logs and the download cache go (default: .demo)

Every child process gets the S3 endpoint and dummy credentials in its own environment; this process's
environment is never changed, so real AWS credentials cannot be used by accident. On failure the demo prints
one line naming the failed step and why, with the path of the step's full log.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType, SimpleNamespace

from workload.bundle.format import CONFIG
from workload.cli import SDK_LOGGERS
from workload.data.ingest import OFFICIAL_SHA256, OFFICIAL_URL
from workload.data.processed import Review, open_processed
from workload.errors import WorkloadError
from workload.modeling.evaluate import resolve_split, reviews_for_split
from workload_devtools.embedded_s3 import EmbeddedS3
from workload_devtools.server_process import ServerProcess

BUCKET = "imdb-sentiment-demo"
# The storage component's layout: raw tarballs, processed data, model bundles, logs.
PREFIXES = ("raw/", "processed/", "models/", "logs/", "capture/")
CAPTURE_URI = f"s3://{BUCKET}/capture/"
CAPTURE_FLUSH_SECONDS = 1  # the API's capture buffer is written this often, so `monitor` sees a replay at once
SMOKE_TEXT = "The movie was amazing!"
STEPS = (
    "embedded S3", "bucket", "raw data", "ingest", "train", "evaluate", "weaker model", "quality gate", "registry",
    "serve", "smoke request", "replay held-out reviews", "monitor", "replay a drifted stream", "monitor again",
)  # fmt: skip
DEFAULT_REPLAY = 300
# The deliberately weaker model the quality gate must reject: trained on 1 % of the same train split.
WEAK_TRAIN_FRACTION = 0.01
GATE_FAILED = 3  # `models gate`'s exit status for a rejected candidate
HEALTH_TIMEOUT_S = 120.0
HEARTBEAT_S = 10.0
SILENT_HEARTBEAT_S = 30.0
# A logging record as the workload CLI writes it: "2026-01-01 12:00:00,123 INFO workload.modeling.train: message".
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d [\d:,.]+ [A-Z]+ (?P<logger>[\w.]+): (?P<message>.*)$")


class StepFailed(Exception):
    """One step failed: `reason` is a single line for the user; `log` holds the details when there are any."""

    def __init__(self, reason: str, log: Path | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.log = log


def _raise_keyboard_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def last_line(text: str) -> str:
    """The last non-empty line, splitting on carriage returns too (progress bars redraw with '\\r')."""
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return lines[-1] if lines else ""


def progress_line(text: str) -> str:
    """The latest line worth showing as progress: the AWS SDK's chatter is skipped, the timestamp dropped."""
    for line in reversed(text.replace("\r", "\n").splitlines()):
        match = LOG_RECORD.match(line.strip())
        if match is None:
            if line.strip():
                return line.strip()
        elif not match["logger"].startswith(SDK_LOGGERS):
            return f"{match['logger']}: {match['message']}"
    return ""


def log_tail(log: Path, size: int = 8192) -> str:
    with log.open("rb") as handle:
        handle.seek(max(0, log.stat().st_size - size))
        return handle.read().decode("utf-8", errors="replace")


def failure_reason(log: Path) -> str:
    """The child's own one-line error (`error: ...` from the workload CLI) or else its last line of output."""
    tail = log_tail(log)
    errors = [line.strip() for line in tail.splitlines() if line.startswith("error:")]
    if errors:
        return errors[-1].removeprefix("error:").strip()
    return last_line(tail) or "no output"


def last_json_object(log: Path) -> dict:
    """The last line of a step's log that is a JSON object (`evaluate` and `models gate` print theirs last)."""
    for line in reversed(log_tail(log).splitlines()):
        with contextlib.suppress(json.JSONDecodeError):
            value = json.loads(line)
            if isinstance(value, dict):
                return value
    raise StepFailed(f"{log.stem} printed no JSON line", log)


def kill_process_group(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL what is left of a child's process group: workers can outlive a master that died first, and the
    group id (the child started its own session) still reaches them."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def stop_process_group(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM the child's whole process group, then SIGKILL what is left."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=timeout)
    kill_process_group(process)


def post_review(base_url: str, text: str) -> dict:
    request = urllib.request.Request(
        f"{base_url}/predict", data=json.dumps({"text": text}).encode(), headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        raise StepFailed(f"POST /predict answered {error.code}: {error.read()[:200]!r}") from error


class Demo:
    def __init__(self, state_dir: Path) -> None:
        self.run_id = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        self.state_dir = state_dir
        self.log_dir = state_dir / "logs" / self.run_id
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.s3 = EmbeddedS3()
        self.server: ServerProcess | None = None
        self.current_step = "start"

    # --- plumbing -------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def step(self, name: str) -> Iterator[None]:
        self.current_step = name
        print(f"[{STEPS.index(name) + 1}/{len(STEPS)}] {name}", flush=True)
        started = time.monotonic()
        yield
        print(f"      done in {time.monotonic() - started:.1f}s", flush=True)

    def child_env(self) -> dict[str, str]:
        return {**self.s3.child_env(), "PYTHONUNBUFFERED": "1"}

    def serving(self) -> bool:
        return self.server is not None and self.server.process is not None and self.server.process.poll() is None

    def start_child(self, name: str, cli_args: Sequence[str]) -> tuple[subprocess.Popen[bytes], Path]:
        """Start `python -m workload <cli_args>` with its output in the step's log."""
        log = self.log_dir / f"{name}.log"
        print(f"      $ python -m workload {' '.join(cli_args)}", flush=True)
        with log.open("wb") as handle:
            # Own session: Ctrl-C reaches only this script, which then stops the child and all its workers.
            process = subprocess.Popen(
                [sys.executable, "-m", "workload", *cli_args],
                stdout=handle,
                stderr=subprocess.STDOUT,
                env=self.child_env(),
                start_new_session=True,
            )
        return process, log

    def run_child(self, name: str, cli_args: Sequence[str], ok_codes: Sequence[int] = (0,)) -> Path:
        """Run one CLI step to completion, echoing its latest progress line now and then."""
        process, log = self.start_child(name, cli_args)
        started = last_check = last_print = time.monotonic()
        shown = ""
        try:
            while process.poll() is None:
                time.sleep(0.2)
                now = time.monotonic()
                if now - last_check < HEARTBEAT_S:
                    continue
                last_check = now
                latest = progress_line(log_tail(log, 4096))
                # A new progress line is shown at once; with none, a still-running line now and then.
                if (latest and latest != shown) or now - last_print >= SILENT_HEARTBEAT_S:
                    shown, last_print = latest, now
                    print(f"      {now - started:5.0f}s  {latest[:110] if latest else 'running'}", flush=True)
        finally:
            stop_process_group(process)
        self.upload_log(log)
        if process.returncode not in ok_codes:
            raise StepFailed(failure_reason(log), log)
        return log

    def upload_log(self, log: Path) -> None:
        """Keep the step's log in the bucket's `logs/` prefix, where the EC2 training run keeps its own."""
        with contextlib.suppress(Exception):  # a log copy must never hide the step's own result
            self.s3.client().upload_file(str(log), BUCKET, f"logs/{self.run_id}/{log.name}")

    # --- steps ----------------------------------------------------------------------------------------

    def start_s3(self) -> None:
        try:
            self.s3.start()
        except WorkloadError as error:  # already one clear line; anything else reaches main()'s one-line report
            raise StepFailed(str(error)) from error
        print(f"      moto S3 at {self.s3.endpoint_url}")

    def create_bucket(self) -> None:
        client = self.s3.client()
        client.create_bucket(Bucket=BUCKET)
        for prefix in PREFIXES:
            client.put_object(Bucket=BUCKET, Key=prefix, Body=b"")
        print(f"      s3://{BUCKET}/ with {', '.join(PREFIXES)}")

    def upload_raw(self, source: str) -> str:
        tarball = self.fetch(source)
        key = f"raw/{tarball.name}"
        size_mb = tarball.stat().st_size / 1e6
        print(f"      uploading {tarball} ({size_mb:.0f} MB) to s3://{BUCKET}/{key}", flush=True)
        self.s3.client().upload_file(str(tarball), BUCKET, key)
        return f"s3://{BUCKET}/{key}"

    def fetch(self, source: str) -> Path:
        """A local path is used as it is; a URL is downloaded once into the cache (temp name, then rename)."""
        if urllib.parse.urlparse(source).scheme not in ("http", "https"):
            path = Path(source).expanduser()
            if not path.is_file():
                raise StepFailed(f"IMDB_SOURCE {source!r} is not a file or an http(s) URL")
            return path
        cached = self.state_dir / "cache" / Path(urllib.parse.urlparse(source).path).name
        if cached.is_file():
            print(f"      using the cached download {cached}")
            return cached
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(cached.suffix + ".part")
        print(f"      downloading {source} (set IMDB_SOURCE=path to use a local copy)", flush=True)
        try:
            with urllib.request.urlopen(source, timeout=60) as response, partial.open("wb") as out:
                shutil.copyfileobj(response, out, length=1 << 20)
        except (urllib.error.URLError, OSError) as error:
            partial.unlink(missing_ok=True)
            raise StepFailed(f"cannot download {source}: {error} (offline? set IMDB_SOURCE=path/to/tarball)") from error
        partial.rename(cached)
        return cached

    def report_metrics(self, log: Path, model_uri: str) -> None:
        metrics = last_json_object(log)
        # Recorded next to the bundle, where the EC2 training run records its own: `models list` shows it.
        bucket, key = model_uri.removeprefix("s3://").split("/", 1)
        self.s3.client().put_object(Bucket=bucket, Key=f"{key}.evaluation.json", Body=json.dumps(metrics).encode())
        split = metrics.get("split")
        why = "" if split == "test" else " (the source has no test split, like the offline train-only tarball)"
        print(f"      evaluated on the {split} split{why}")
        shown = {key: value for key, value in metrics.items() if not isinstance(value, (list, dict))}
        for key, value in shown.items():
            print(f"      {key:>20}: {value:.4f}" if isinstance(value, float) else f"      {key:>20}: {value}")
        if "confusion_matrix" in metrics:
            print(f"      {'confusion_matrix':>20}: {metrics['confusion_matrix']}")

    def quality_gate(self, candidate_uri: str, baseline_uri: str, data_uri: str) -> None:
        arguments = ["models", "gate", "--candidate", candidate_uri, "--baseline", baseline_uri, "--data", data_uri]
        verdict = last_json_object(self.run_child("gate", [*arguments, "--record"], ok_codes=(0, GATE_FAILED)))
        print(f"      the weaker model {'PASSED' if verdict['passed'] else 'failed'} the gate:")
        for reason in verdict["reasons"]:
            print(f"        - {reason}")
        if "latency_ratio" in verdict:
            print(f"      p99 latency ratio to the first model: {verdict['latency_ratio']:.2f}")

    def show_registry(self) -> None:
        log = self.run_child("registry", ["models", "list", "--models-uri", f"s3://{BUCKET}/models"])
        for line in log.read_text(encoding="utf-8").splitlines():
            if not LOG_RECORD.match(line):
                print(f"      {line}")

    def start_server(self, model_uri: str) -> str:
        log = self.log_dir / "serve.log"
        capture = {
            "CAPTURE_PERCENT": "100",
            "CAPTURE_URI": CAPTURE_URI,
            "CAPTURE_FLUSH_SECONDS": str(CAPTURE_FLUSH_SECONDS),
        }
        self.server = ServerProcess(model_uri, env={**self.child_env(), **capture}, log_path=log)
        print(f"      $ python -m workload serve --model {model_uri} --port {self.server.port}", flush=True)
        try:
            self.server.start().wait_ready(HEALTH_TIMEOUT_S)
        except WorkloadError as error:
            # An API that exited has its own reason at the end of its log; a slow one names its last answer.
            reason = f"{error}: {failure_reason(log)}" if not self.serving() else str(error)
            raise StepFailed(reason, log) from error
        return self.server.url

    def smoke_request(self, base_url: str) -> None:
        answer = post_review(base_url, SMOKE_TEXT)
        print(f"      POST /predict {json.dumps({'text': SMOKE_TEXT})}")
        print(f"      -> {json.dumps(answer)}")

    def held_out_reviews(self, data_uri: str, model_uri: str) -> list[Review]:
        """The reviews `evaluate` used (test split, else the validation carve-out): never trained on."""
        local = self.log_dir / "processed"
        local.mkdir(exist_ok=True)
        client = self.s3.client()
        prefix = data_uri.removeprefix(f"s3://{BUCKET}/")
        for item in client.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/")["Contents"]:
            client.download_file(BUCKET, item["Key"], str(local / item["Key"].rsplit("/", 1)[1]))
        config_key = f"{model_uri.removeprefix(f's3://{BUCKET}/')}/{CONFIG}"
        bundle = SimpleNamespace(config=json.loads(client.get_object(Bucket=BUCKET, Key=config_key)["Body"].read()))
        with open_processed(str(local)) as data:
            return reviews_for_split(data, resolve_split(data, "auto"), bundle)  # type: ignore[arg-type]

    def replay(self, base_url: str, texts: list[str], count: int) -> str:
        """POST `count` requests cycling through `texts`; returns the time just before (the monitor's --since)."""
        since = datetime.now(UTC) - timedelta(seconds=1)
        for index in range(count):
            post_review(base_url, texts[index % len(texts)])
        print(f"      {count} requests from {len(texts)} distinct reviews, all answered 200")
        time.sleep(2 * CAPTURE_FLUSH_SECONDS + 1)  # every worker writes out its capture buffer
        return since.isoformat(timespec="seconds")

    def monitor(self, name: str, model_uri: str, since: str) -> None:
        output = f"s3://{BUCKET}/logs/monitoring/{self.run_id}/{name}"
        log = self.run_child(
            f"monitor-{name}",
            ["monitor", "--model", model_uri, "--capture", CAPTURE_URI, "--since", since, "--output", output],
        )
        summary = json.loads(last_line(log_tail(log)))
        verdict = "DRIFT" if summary["drift"] else "no drift"
        print(f"      verdict: {verdict} ({summary['n']} records of model {summary['model_version']})")
        for check, result in summary["checks"].items():
            print(f"      {check:>22}: {result['value']:.4f} (drift at {result['threshold']:g}) {result['status']}")
        local = self.log_dir / f"report-{name}.html"
        self.s3.client().download_file(BUCKET, f"{output.removeprefix(f's3://{BUCKET}/')}/report.html", str(local))
        print(f"      report: {output}/report.html (copy: {local})")

    # --- the pipeline ---------------------------------------------------------------------------------

    def run(self, source: str, sample: int | None, epochs: int | None, replay: int, exit_after_smoke: bool) -> None:
        with self.step("embedded S3"):
            self.start_s3()
        with self.step("bucket"):
            self.create_bucket()
        with self.step("raw data"):
            raw_uri = self.upload_raw(source)

        # The same URIs as the EC2 training user data (components/templates/training_user_data.sh).
        data_uri = f"s3://{BUCKET}/processed/{self.run_id}"
        model_uri = f"s3://{BUCKET}/models/{self.run_id}"
        with self.step("ingest"):
            sample_args = ["--sample", str(sample)] if sample else []
            # Ingest checks the official checksum only for the official URL; the demo hands it an s3:// copy.
            sha256_args = ["--sha256", OFFICIAL_SHA256] if source == OFFICIAL_URL else []
            self.run_child("ingest", ["ingest", "--source", raw_uri, "--output", data_uri, *sample_args, *sha256_args])
        with self.step("train"):
            epoch_args = ["--epochs", str(epochs)] if epochs else []
            self.run_child("train", ["train", "--data", data_uri, "--output", model_uri, *epoch_args])
            print(f"      training curves (HTML, in the bundle): {model_uri}/report.html", flush=True)
        with self.step("evaluate"):
            # auto: the test split when the source had one, else the validation carve-out; the JSON names it
            log = self.run_child("evaluate", ["evaluate", "--model", model_uri, "--data", data_uri, "--split", "auto"])
            self.report_metrics(log, model_uri)
        weak_uri = f"{model_uri}-weak"
        with self.step("weaker model"):
            weak_args = ["--output", weak_uri, "--train-fraction", str(WEAK_TRAIN_FRACTION), *epoch_args]
            self.run_child("train-weak", ["train", "--data", data_uri, *weak_args])
        with self.step("quality gate"):
            self.quality_gate(weak_uri, model_uri, data_uri)
        with self.step("registry"):
            self.show_registry()
        with self.step("serve"):
            base_url = self.start_server(model_uri)
            print(f"      API on {base_url}, serving {model_uri}")
        with self.step("smoke request"):
            self.smoke_request(base_url)
        with self.step("replay held-out reviews"):
            held_out = self.held_out_reviews(data_uri, model_uri)
            since = self.replay(base_url, [review.text for review in held_out], replay)
        with self.step("monitor"):
            self.monitor("held-out", model_uri, since)
        with self.step("replay a drifted stream"):
            print("      only the negative reviews, as if the audience had turned against every film")
            since = self.replay(base_url, [review.text for review in held_out if review.label == "negative"], replay)
        with self.step("monitor again"):
            self.monitor("negative-only", model_uri, since)

        assert self.server is not None
        ops_url = self.server.ops_url
        print(f"\nweb page: {base_url}/\nAPI:      {base_url}/predict\nops:      {ops_url}/health   {ops_url}/metrics")
        if exit_after_smoke:
            return
        print("serving until Ctrl-C ...", flush=True)
        while self.serving():
            time.sleep(0.5)
        self.current_step = "serve"
        assert self.server is not None and self.server.process is not None
        raise StepFailed(
            f"the API stopped on its own with code {self.server.process.returncode}", self.log_dir / "serve.log"
        )

    def close(self) -> None:
        if self.server is not None and self.server.process is not None:
            self.server.stop(timeout=15.0)
            kill_process_group(self.server.process)
        self.s3.stop()


def main() -> int:
    # Ctrl-C must stop the demo even when it was started with SIGINT ignored (a background job of a script).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    signal.signal(signal.SIGHUP, _raise_keyboard_interrupt)
    sample = os.environ.get("DEMO_SAMPLE") or None
    epochs = os.environ.get("DEMO_EPOCHS") or None
    replay = os.environ.get("DEMO_REPLAY") or str(DEFAULT_REPLAY)
    for name, value in (("DEMO_SAMPLE", sample), ("DEMO_EPOCHS", epochs), ("DEMO_REPLAY", replay)):
        if value is not None and not (value.isdigit() and int(value) > 0):
            print(f"demo: {name} must be a positive whole number, not {value!r}", file=sys.stderr)
            return 2
    demo = Demo(Path(os.environ.get("DEMO_DIR", ".demo")))
    try:
        demo.run(
            source=os.environ.get("IMDB_SOURCE") or OFFICIAL_URL,
            sample=int(sample) if sample else None,
            epochs=int(epochs) if epochs else None,
            replay=int(replay),
            exit_after_smoke=os.environ.get("DEMO_EXIT", "") not in ("", "0"),
        )
    except StepFailed as failure:
        where = f" (log: {failure.log})" if failure.log else ""
        print(f"demo failed at step '{demo.current_step}': {failure.reason}{where}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        serving = demo.serving()
        print("\nstopped" if serving else f"\ninterrupted during step '{demo.current_step}'", file=sys.stderr)
        return 0 if serving else 130
    except Exception as error:  # anything unforeseen still ends in one line, not a traceback
        print(f"demo failed at step '{demo.current_step}': {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    finally:
        # A second Ctrl-C must not cut the cleanup short and leave gunicorn or moto running.
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, signal.SIG_IGN)
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
