"""Check the monitoring loop on real reviews and print ONE JSON line of figures.

    python benchmarks/monitoring.py --reviews /path/to/aclImdb_train.tar.gz [--holdout 1000]

It holds out `--holdout` reviews per label from the tarball's labelled train split (seeded, never seen by
training), trains a bundle on the rest through the real CLI (`ingest`, `train`), then for each stream starts the
API (gunicorn) with capture at 100 % to an embedded S3, replays the stream, stops the API gracefully (which
flushes the capture) and runs `monitor` on that stream's records. Streams and targets:
- `held_out`: the held-out reviews as they are: no drift, every PSI < 0.1;
- `negative_only`: only the held-out negative reviews: drift;
- `cut_to_20_words`: the held-out reviews cut to their first 20 words: drift;
- `destination_down`: the held-out reviews with the capture destination unreachable: 0 failed requests, every
  record counted as dropped in `/metrics`.
Reviews are sent as a client would paste them from IMDB, `<br />` markup included: the API strips it before
tokenizing, as `ingest` did for training.
"""

from __future__ import annotations

import argparse
import io
import json
import random
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from workload.errors import WorkloadError
from workload_devtools.embedded_s3 import EmbeddedS3
from workload_devtools.ports import free_loopback_port
from workload_devtools.server_process import ServerProcess, get

LABELLED = re.compile(r"/train/(pos|neg)/[^/]+\.txt$")
BUCKET = "monitoring-benchmark"


def split_tarball(source: Path, target: Path, per_label: int, seed: int) -> list[tuple[str, str]]:
    """Copy `source` to `target` without `per_label` random reviews of each label; returns those (label, text)."""
    with tarfile.open(source, "r:gz") as tar:
        members = [m for m in tar.getmembers() if m.isfile() and (LABELLED.search(m.name) or "/train/" not in m.name)]
        labelled = {label: [m for m in members if f"/train/{label}/" in m.name] for label in ("pos", "neg")}
        rng = random.Random(seed)
        held = {m.name for group in labelled.values() for m in rng.sample(group, per_label)}
        held_out = []
        with tarfile.open(target, "w:gz") as out:
            for member in members:
                if "/train/unsup/" in member.name:
                    continue  # training never reads unsup; skipping it keeps the copy small
                data = tar.extractfile(member).read()  # type: ignore[union-attr]
                if member.name in held:
                    label = LABELLED.search(member.name).group(1)  # type: ignore[union-attr]
                    held_out.append((label, data.decode("utf-8")))
                else:
                    out.addfile(member, io.BytesIO(data))
    return held_out


def workload(*args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run([sys.executable, "-m", "workload", *args], capture_output=True, text=True, env=env)
    if result.returncode not in (0,):
        raise WorkloadError(f"`workload {args[0]}` failed: {result.stderr.strip().splitlines()[-1:]}")
    return result.stdout.strip().splitlines()[-1]


def replay(url: str, texts: list[str]) -> int:
    """POST each text to /predict from 4 threads; returns how many failed."""
    import urllib.request

    def post(text: str) -> bool:
        request = urllib.request.Request(
            f"{url}/predict", data=json.dumps({"text": text}).encode(), headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status == 200
        except OSError:
            return False

    with ThreadPoolExecutor(4) as pool:
        return sum(not ok for ok in pool.map(post, texts))


def run_stream(s3: EmbeddedS3, model: str, name: str, texts: list[str], workdir: Path) -> dict:
    capture = f"s3://{BUCKET}/capture/{name}/"
    env = {**s3.child_env(), "CAPTURE_PERCENT": "100", "CAPTURE_URI": capture, "LOG_LEVEL": "WARNING"}
    with ServerProcess(model, env=env, log_path=workdir / f"{name}.log") as server:
        server.wait_ready(timeout=120)
        failed = replay(server.url, texts)
    # leaving the block stops gunicorn gracefully: each worker's exit hook flushes its buffer
    output = f"s3://{BUCKET}/reports/{name}"
    summary = json.loads(workload("monitor", "--model", model, "--capture", capture, "--hours", "1",
                                  "--output", output, env=s3.child_env()))  # fmt: skip
    return {
        "sent": len(texts),
        "failed_requests": failed,
        "n": summary["n"],
        "drift": summary["drift"],
        "checks": {key: {"value": round(c["value"], 4), "status": c["status"]} for key, c in summary["checks"].items()},
    }


def run_destination_down(s3: EmbeddedS3, model: str, texts: list[str], workdir: Path) -> dict:
    """Replay with capture on and nothing listening where the capture goes; read the drop count from /metrics."""
    env = {**s3.child_env(), "CAPTURE_PERCENT": "100", "CAPTURE_URI": f"s3://{BUCKET}/capture/down/",
           "CAPTURE_FLUSH_SECONDS": "1", "LOG_LEVEL": "WARNING",
           "AWS_ENDPOINT_URL_S3": f"http://127.0.0.1:{free_loopback_port()}"}  # fmt: skip
    with ServerProcess(model, env=env, log_path=workdir / "destination_down.log") as server:
        server.wait_ready(timeout=120)
        failed = replay(server.url, texts)
        time.sleep(5)  # a flush a second, each failing after its short connect timeout
        metrics = get(server.ops_url + "/metrics")[1].decode()
    dropped = re.search(r'sentiment_capture_records_total\{outcome="dropped_failed"\} ([\d.e+]+)', metrics)
    return {"sent": len(texts), "failed_requests": failed, "dropped_failed": float(dropped.group(1)) if dropped else 0}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reviews", type=Path, required=True, help="aclImdb tarball with a labelled train split")
    parser.add_argument("--holdout", type=int, default=1000, help="held-out reviews per label (default 1000)")
    parser.add_argument("--model", help="use this bundle instead of training one (it must not have seen the holdout)")
    args = parser.parse_args()
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-monitoring-") as tmp, EmbeddedS3() as s3:
        workdir = Path(tmp)
        held_out = split_tarball(args.reviews, workdir / "train.tar.gz", args.holdout, seed=0)
        model = args.model
        if model is None:
            workload("ingest", "--source", str(workdir / "train.tar.gz"), "--output", str(workdir / "processed"))
            workload("train", "--data", str(workdir / "processed"), "--output", str(workdir / "bundle"))
            model = str(workdir / "bundle")
        s3.client().create_bucket(Bucket=BUCKET)
        cut: Callable[[str], str] = lambda text: " ".join(text.split()[:20])  # noqa: E731
        streams = {
            "held_out": [text for _, text in held_out],
            "negative_only": [text for label, text in held_out if label == "neg"],
            "cut_to_20_words": [cut(text) for _, text in held_out],
        }
        figures = {name: run_stream(s3, model, name, texts, workdir) for name, texts in streams.items()}
        figures["destination_down"] = run_destination_down(s3, model, streams["held_out"], workdir)
    held = figures["held_out"]["checks"]
    figures["pass"] = {
        "held_out_no_drift": not figures["held_out"]["drift"]
        and held["score_psi"]["value"] < 0.1
        and held["length_psi"]["value"] < 0.1,
        "negative_only_drift": figures["negative_only"]["drift"],
        "cut_to_20_words_drift": figures["cut_to_20_words"]["drift"],
        "no_failed_requests": all(f["failed_requests"] == 0 for f in figures.values() if isinstance(f, dict)),
        "destination_down_drops_counted": figures["destination_down"]["dropped_failed"] > 0,
    }
    figures["seconds"] = round(time.monotonic() - started, 1)
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except WorkloadError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
