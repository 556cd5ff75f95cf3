"""Benchmark the inference API on this machine and print ONE JSON line.

    python benchmarks/serve.py --model MODEL_URI [--reviews aclImdb_train.tar.gz]   # a trained bundle
    python benchmarks/serve.py --quick                                              # tiny synthetic bundle
    python benchmarks/serve.py --quick --capture-overhead                           # data capture's cost
    python benchmarks/serve.py --model NEW --baseline-python OLD/.venv/bin/python --baseline-model OLD_BUNDLE

It starts the real server (`python -m workload serve`, gunicorn, default worker count) on 127.0.0.1 and
measures, against these targets for a 2-core machine with the load generator on the same machine:
- start -> first `/health` 200 with the bundle on local disk: <= 1.5 s;
- each worker's peak RSS (VmHWM, read after the load runs) <= 120 MB: what sizes the Fargate task;
- one client, sequential `/predict` of IMDB-length reviews (a new connection per request: sync workers answer
  `Connection: close`): p50 <= 5 ms, p99 <= 20 ms;
- saturated throughput, `wrk` with 32 connections: single-review `/predict` >= 60 % of `GET /static/style.css`
  (no inference) on the same workers in the same run (alternating runs, so drift hits both alike);
- health under load: while `wrk` keeps 128 connections sending maximum-size batches (MAX_BATCH reviews filling
  MAX_BODY_BYTES), `/health` on the ops port, polled every 50 ms, has p99 <= 1 s.
With `--capture-overhead` it measures instead what data capture at 100 % costs: two servers (one worker each
unless --workers is given), one capturing every request to an embedded S3 (`--capture-to folder`: a local folder)
and one not, loaded in alternating wrk rounds, the pair started afresh `--epochs` times; target: throughput with
capture >= 95 % of without (median of the paired rounds, printed with their range, and the same ratio from server
CPU per request), with the CPU per captured request of the writer thread and of the destination.
With `--baseline-python` it compares instead the sequential p50 with another checkout's workload (its venv's
python and a bundle it trained; one from before the ops port works too): both servers run at once and take turns,
one round of sequential requests each, the order swapped every round so drift hits both alike; target: the
median of the per-round p50 ratios (this checkout / baseline) <= 1. Then `--throughput-rounds` paired wrk rounds
of single-review `/predict` (32 connections) on the same two servers; target: the median of the per-round
throughput ratios >= 0.95 (no more than 5 % below the baseline).
Reviews come from the real IMDB tarball when given, else from the synthetic corpus at IMDB's length
distribution. Needs `wrk` (Debian package `wrk`).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from workload.errors import WorkloadError
from workload.serving.settings import ServeSettings
from workload_devtools.embedded_s3 import EmbeddedS3
from workload_devtools.server_process import ServerProcess, get
from workload_devtools.synthetic import synthetic_review, write_aclimdb_tarball

TARGETS = {
    "p50_ms": 5.0,
    "p99_ms": 20.0,
    "throughput_ratio": 0.60,
    "start_to_ready_s": 1.5,
    "health_p99_ms": 1000.0,
    "worker_peak_rss_mb": 120,
}
HEALTH_POLL_SECONDS = 0.05
CAPTURE_TARGET = {"capture_throughput_ratio": 0.95}
BASELINE_TARGET = {"p50_ratio": 1.0, "throughput_ratio": 0.95}

WRK_POST_SCRIPT = """
-- Cycles through pre-built POST /predict requests, one JSON body per line of the file given after `--`.
local requests = {}
local next_index = 0
function init(args)
  for line in io.lines(args[1]) do
    requests[#requests + 1] = wrk.format("POST", "/predict", {["Content-Type"] = "application/json"}, line)
  end
  next_index = math.random(#requests)
end
function request()
  next_index = next_index % #requests + 1
  return requests[next_index]
end
"""


def _read_text(tar: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    return tar.extractfile(member).read().decode("utf-8")  # type: ignore[union-attr]


def real_reviews(tarball: Path, count: int, seed: int) -> list[str]:
    """A uniform sample of labelled train reviews (reservoir sampling while streaming the tarball)."""
    rng = random.Random(seed)
    sample: list[str] = []
    seen = 0
    with tarfile.open(tarball, "r:gz") as tar:
        for member in tar:
            if not (member.isfile() and re.search(r"/train/(pos|neg)/[^/]+\.txt$", member.name)):
                continue
            seen += 1
            if len(sample) < count:
                sample.append(_read_text(tar, member))
            elif (slot := rng.randrange(seen)) < count:
                sample[slot] = _read_text(tar, member)
    if not sample:
        raise WorkloadError(f"no aclImdb/train/pos|neg reviews found in {tarball}")
    return sample


def synthetic_reviews(count: int, seed: int) -> list[str]:
    """Synthetic reviews with IMDB's word-count distribution (median ~175 words, mean ~230, long tail)."""
    rng = random.Random(seed)
    return [
        synthetic_review(rng, rng.choice(["pos", "neg"]), n_words=min(2400, max(10, int(rng.lognormvariate(5.2, 0.7)))))
        for _ in range(count)
    ]


def quick_bundle(workdir: Path) -> Path:
    """A small bundle trained on the synthetic corpus, through the real CLI."""
    tarball = write_aclimdb_tarball(workdir / "synthetic.tar.gz", n_train=200, n_test=50, n_unsup=0)
    for command in (
        ["ingest", "--source", str(tarball), "--output", str(workdir / "processed")],
        ["train", "--data", str(workdir / "processed"), "--output", str(workdir / "bundle"), "--device", "cpu"],
    ):
        subprocess.run([sys.executable, "-m", "workload", *command], check=True, stdout=subprocess.DEVNULL)
    return workdir / "bundle"


def sequential_latencies_ms(port: int, bodies: list[bytes], count: int) -> list[float]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    headers = {"Content-Type": "application/json"}
    latencies = []
    for index in range(count):
        started = time.perf_counter()
        connection.request("POST", "/predict", body=bodies[index % len(bodies)], headers=headers)
        response = connection.getresponse()
        response.read()
        latencies.append((time.perf_counter() - started) * 1000)
        if response.status != 200:
            raise WorkloadError(f"/predict answered {response.status} during the latency run")
    connection.close()
    return latencies


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def peak_rss_mb(pid: int) -> float:
    """A process's peak resident set size so far (Linux /proc VmHWM), in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmHWM:\s+(\d+) kB", status, flags=re.MULTILINE).group(1)) / 1024  # type: ignore[union-attr]


def run_wrk(url: str, duration: int, connections: int, script: Path | None, data: Path | None) -> str:
    command = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{duration}s", "--timeout", "30s", "--latency"]
    if script is not None:
        command += ["-s", str(script)]
    command.append(url)
    if data is not None:
        command += ["--", str(data)]
    return subprocess.run(command, check=True, capture_output=True, text=True).stdout


def wrk_requests_per_second(url: str, duration: int, connections: int, script: Path | None, data: Path | None) -> float:
    output = run_wrk(url, duration, connections, script, data)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    socket_errors = re.search(r"Socket errors: (.*)", output)
    if errors or socket_errors:
        raise WorkloadError(f"wrk saw errors against {url}: {output}")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]


def maximum_batch(reviews: list[str]) -> bytes:
    """A `/predict` body at the server's default limits: MAX_BATCH reviews, as long as MAX_BODY_BYTES allows."""
    limits = ServeSettings.from_mapping({})
    per_text = min(limits.max_text_chars, (limits.max_body_bytes - 64) // limits.max_batch - 8)
    corpus = " ".join(reviews).encode("ascii", "ignore").decode()  # ASCII: one byte per character in the body
    texts = [corpus[i * 997 % len(corpus) :][:per_text].ljust(per_text, ".") for i in range(limits.max_batch)]
    return json.dumps({"texts": texts}).encode()


def health_under_load(server: ServerProcess, workdir: Path, duration: int, connections: int) -> dict[str, object]:
    """Poll the ops port's `/health` while `wrk` saturates the workers with maximum-size batches."""
    (workdir / "batch.jsonl").write_bytes(maximum_batch(synthetic_reviews(200, seed=1)) + b"\n")
    latencies, failures, done = [], [], threading.Event()

    def poll() -> None:
        while not done.is_set():
            started = time.perf_counter()
            try:
                status, _ = get(server.ops_url + "/health", timeout=10)
            except OSError as error:
                status = type(error).__name__
            latencies.append((time.perf_counter() - started) * 1000)
            if status != 200:
                failures.append(status)
            time.sleep(HEALTH_POLL_SECONDS)

    poller = threading.Thread(target=poll)
    poller.start()
    try:
        output = run_wrk(server.url + "/predict", duration, connections, workdir / "post.lua", workdir / "batch.jsonl")
    finally:
        done.set()
        poller.join()
    served = re.search(r"Requests/sec:\s+([\d.]+)", output)
    return {
        "load_connections": connections,
        "batch_bytes": (workdir / "batch.jsonl").stat().st_size - 1,
        "batch_rps": float(served.group(1)) if served else None,
        "batch_non_2xx": int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", output)) else 0,
        "health_checks": len(latencies),
        "health_failures": len(failures),
        "health_p50_ms": round(percentile(latencies, 50), 1),
        "health_p99_ms": round(percentile(latencies, 99), 1),
        "health_max_ms": round(max(latencies), 1),
    }


def cpu_seconds(stat_path: str) -> float:
    """CPU time (user + system) of a process (/proc/PID/stat) or one of its threads (/proc/PID/task/TID/stat)."""
    fields = Path(stat_path).read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14 and 15)


def server_cpu_seconds(server: ServerProcess) -> float:
    """CPU time the server's master and workers have used so far."""
    assert server.process is not None
    return sum(cpu_seconds(f"/proc/{pid}/stat") for pid in {server.process.pid, *server.worker_pids()})


def background_cpu_seconds(server: ServerProcess) -> float:
    """CPU time of the workers' threads other than the one serving requests (the capture writer's)."""
    workers = server.worker_pids()
    return sum(cpu_seconds(f"/proc/{pid}/stat") - cpu_seconds(f"/proc/{pid}/task/{pid}/stat") for pid in workers)


def capture_overhead(args: argparse.Namespace, model: str, workdir: Path, env: dict[str, str]) -> dict:
    """Throughput of /predict with capture at 100 % against without, paired round by round, over `--epochs` fresh
    pairs of servers: two server processes doing the same work differ by a few percent on a shared machine (their
    memory layout, their cores), so one pair's bias must not decide the result."""
    tally = CaptureTally()
    with EmbeddedS3() as s3:
        s3.client().create_bucket(Bucket="capture")
        # One worker per server unless --workers says otherwise: each server's worker gets a core while it is
        # loaded, and the A/B does not hinge on whether a second worker came up (see docs/monitoring.md).
        env = {"WEB_CONCURRENCY": "1", **env}
        destination = "s3://capture/capture/" if args.capture_to == "s3" else str(workdir / "capture")
        capturing = {**s3.child_env(), "CAPTURE_PERCENT": "100", "CAPTURE_URI": destination}
        for epoch in range(args.epochs):
            servers = {
                "off": ServerProcess(model, env={**os.environ, **env}, log_path=workdir / f"plain-{epoch}.log"),
                "on": ServerProcess(model, env={**capturing, **env}, log_path=workdir / f"capture-{epoch}.log"),
            }
            with servers["off"], servers["on"]:
                capture_epoch(args, servers, s3.pid, workdir, tally, rounds=max(1, args.rounds // args.epochs))
        if args.capture_to == "s3":
            objects = s3.client().list_objects_v2(Bucket="capture").get("KeyCount", 0)
        else:
            objects = sum(1 for _ in (workdir / "capture").rglob("*.jsonl.gz"))
    rates, cpu_ms = tally.rates, tally.cpu_ms
    ratios = [on / off for off, on in zip(rates["off"], rates["on"], strict=True)]
    ratio = statistics.median(ratios)
    # On a shared machine throughput swings with other load; server CPU per request does not, and at saturation
    # throughput is cores / CPU per request, so its ratio is the steadier estimate of capture's cost.
    cpu_ratio = statistics.median(cpu_ms["off"]) / statistics.median(cpu_ms["on"])
    return {
        "cpu_ms_per_request": {key: round(statistics.median(values), 3) for key, values in cpu_ms.items()},
        "capture_cpu_throughput_ratio": round(cpu_ratio, 3),
        # Where capture's CPU goes, per captured request: the rest of the difference is on the request thread.
        "capture_writer_thread_us_per_request": round(statistics.median(tally.writer_us), 1),
        "capture_destination_us_per_request": round(statistics.median(tally.destination_us), 1),
        "capture_off_rps": round(statistics.mean(rates["off"]), 1),
        "capture_on_rps": round(statistics.mean(rates["on"]), 1),
        "capture_throughput_ratio": round(ratio, 3),
        "capture_throughput_ratio_range": [round(min(ratios), 3), round(max(ratios), 3)],
        "epochs": args.epochs,
        "capture_to": args.capture_to,
        "rounds": {key: [round(v, 1) for v in values] for key, values in rates.items()}
        | {"ratios": [round(v, 3) for v in ratios]},
        "capture_objects_written": objects,
        "targets": CAPTURE_TARGET,
        "pass": {
            "capture_throughput_ratio": ratio >= CAPTURE_TARGET["capture_throughput_ratio"],
            "capture_cpu_throughput_ratio": cpu_ratio >= CAPTURE_TARGET["capture_throughput_ratio"],
        },
    }


@dataclass
class CaptureTally:
    """The capture A/B's figures: per round and server, and per epoch for the capturing server's background CPU."""

    rates: dict[str, list[float]] = field(default_factory=lambda: {"off": [], "on": []})
    cpu_ms: dict[str, list[float]] = field(default_factory=lambda: {"off": [], "on": []})
    writer_us: list[float] = field(default_factory=list)  # the capturing worker's writer thread
    destination_us: list[float] = field(default_factory=list)  # the embedded S3 (on AWS, S3's, not the task's)


def capture_epoch(
    args: argparse.Namespace,
    servers: dict[str, ServerProcess],
    destination_pid: int,
    workdir: Path,
    tally: CaptureTally,
    rounds: int,
) -> None:
    """One pair of servers: a warm-up round each, then `rounds` paired rounds, added to `tally`."""
    for server in servers.values():
        server.wait_ready(timeout=120)
    # One unmeasured round each: steady state, not a worker's one-off start-up (the capturing one imports boto3 and
    # builds its S3 client at its first write, about a CPU-second each).
    paired_throughput(servers, args, workdir, rounds=1)
    writer_before = background_cpu_seconds(servers["on"])
    destination_before = cpu_seconds(f"/proc/{destination_pid}/stat")
    epoch_rates, epoch_cpu_ms = paired_throughput(servers, args, workdir, rounds)
    captured = sum(epoch_rates["on"]) * args.duration
    tally.writer_us.append(1e6 * (background_cpu_seconds(servers["on"]) - writer_before) / captured)
    tally.destination_us.append(1e6 * (cpu_seconds(f"/proc/{destination_pid}/stat") - destination_before) / captured)
    for name in servers:
        tally.rates[name] += epoch_rates[name]
        tally.cpu_ms[name] += epoch_cpu_ms[name]


def compare_with_baseline(args: argparse.Namespace, model: str, bodies: list[bytes], workdir: Path, env: dict) -> dict:
    """Sequential p50 of this checkout's server against a baseline's, in alternating rounds (see the docstring)."""
    servers = {
        "this": ServerProcess(model, env={**os.environ, **env}, log_path=workdir / "this.log"),
        "baseline": ServerProcess(
            args.baseline_model,
            env={**os.environ, **env},
            python=args.baseline_python,
            log_path=workdir / "baseline.log",
            ops_port=args.baseline_ops_port,
        ),
    }
    per_request = max(1, args.sequential // args.rounds)
    p50s: dict[str, list[float]] = {name: [] for name in servers}
    cpu_ms: dict[str, list[float]] = {name: [] for name in servers}
    with servers["this"], servers["baseline"]:
        for server in servers.values():
            server.wait_for("/health", timeout=120)
            sequential_latencies_ms(server.port, bodies, 200)  # warm-up
        for round_index in range(args.rounds):
            order = list(servers) if round_index % 2 == 0 else list(reversed(servers))
            for name in order:
                cpu_before = server_cpu_seconds(servers[name])
                latencies = sequential_latencies_ms(servers[name].port, bodies, per_request)
                cpu_ms[name].append(1000 * (server_cpu_seconds(servers[name]) - cpu_before) / per_request)
                p50s[name].append(percentile(latencies, 50))
        rates, _ = paired_throughput(servers, args, workdir, args.throughput_rounds)
    ratios = [this / baseline for this, baseline in zip(p50s["this"], p50s["baseline"], strict=True)]
    rate_ratios = [this / baseline for this, baseline in zip(rates["this"], rates["baseline"], strict=True)]
    # The server's CPU per request: what the p50 is mostly made of, and steadier than a latency on a shared machine
    cpu = {name: statistics.median(values) for name, values in cpu_ms.items()}
    figures: dict[str, object] = {
        name: {
            "p50_ms_median": round(statistics.median(values), 3),
            "p50_ms_min": round(min(values), 3),
            "p50_ms_max": round(max(values), 3),
            "p50_ms_rounds": [round(value, 3) for value in values],
        }
        for name, values in p50s.items()
    }
    figures.update(
        requests_per_round=per_request,
        server_cpu_ms_per_request={name: round(value, 3) for name, value in cpu.items()},
        server_cpu_ratio=round(cpu["this"] / cpu["baseline"], 3),
        p50_ratio=round(statistics.median(ratios), 3),
        p50_ratios=[round(ratio, 3) for ratio in ratios],
        throughput_rps={name: [round(rate, 1) for rate in values] for name, values in rates.items()},
        throughput_ratio=round(statistics.median(rate_ratios), 3),
        throughput_ratio_range=[round(min(rate_ratios), 3), round(max(rate_ratios), 3)],
        load_average_1m=round(os.getloadavg()[0], 2),
        targets=BASELINE_TARGET,
        passed={
            "p50_ratio": statistics.median(ratios) <= BASELINE_TARGET["p50_ratio"],
            "throughput_ratio": statistics.median(rate_ratios) >= BASELINE_TARGET["throughput_ratio"],
        },
    )
    return figures


def paired_throughput(
    servers: dict[str, ServerProcess], args: argparse.Namespace, workdir: Path, rounds: int
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Each server's single-review /predict requests per second and server CPU ms per request, in wrk rounds
    taking turns, the order swapped every round so drift hits both alike."""
    rates: dict[str, list[float]] = {name: [] for name in servers}
    cpu_ms: dict[str, list[float]] = {name: [] for name in servers}
    post_script, bodies = workdir / "post.lua", workdir / "bodies.jsonl"
    for round_index in range(rounds):
        order = list(servers) if round_index % 2 == 0 else list(reversed(servers))
        for name in order:
            cpu_before = server_cpu_seconds(servers[name])
            url = servers[name].url + "/predict"
            rate = wrk_requests_per_second(url, args.duration, args.connections, post_script, bodies)
            rates[name].append(rate)
            cpu_ms[name].append(1000 * (server_cpu_seconds(servers[name]) - cpu_before) / (rate * args.duration))
    return rates, cpu_ms


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="model bundle URI (a local path for the start-to-ready figure)")
    source.add_argument("--quick", action="store_true", help="train a tiny synthetic bundle and use it")
    parser.add_argument("--reviews", type=Path, help="aclImdb tarball to sample real reviews from")
    parser.add_argument("--sequential", type=int, default=2000, help="sequential requests (default 2000)")
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run (default 5)")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5, help="alternating static/predict wrk rounds (default 5)")
    parser.add_argument("--workers", type=int, help="WEB_CONCURRENCY for the server (default: the server's own)")
    parser.add_argument("--load-connections", type=int, default=128, help="connections sending maximum batches")
    parser.add_argument("--load-duration", type=int, default=15, help="seconds of health-under-load (default 15)")
    parser.add_argument("--capture-overhead", action="store_true", help="measure data capture's throughput cost")
    parser.add_argument(
        "--epochs", type=int, default=4, help="fresh server pairs for --capture-overhead, sharing --rounds (default 4)"
    )
    parser.add_argument(
        "--capture-to",
        choices=["s3", "folder"],
        default="s3",
        help="--capture-overhead's destination: the embedded S3 (default; it shares the machine's cores, as S3 does "
        "not on AWS) or a local folder",
    )
    parser.add_argument("--baseline-python", help="another checkout's venv python: compare the sequential p50")
    parser.add_argument("--baseline-model", help="the bundle the baseline serves (trained by its own code)")
    parser.add_argument(
        "--throughput-rounds", type=int, default=6, help="paired wrk rounds against the baseline (default 6)"
    )
    parser.add_argument(
        "--baseline-ops-port",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="whether the baseline has the ops port (default: no, as before it)",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise WorkloadError("wrk is not installed (apt-get install -y wrk)")

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        workdir = Path(tmp)
        model = str(quick_bundle(workdir)) if args.quick else args.model
        reviews = real_reviews(args.reviews, 1000, seed=0) if args.reviews else synthetic_reviews(1000, seed=0)
        bodies = [json.dumps({"text": text}).encode() for text in reviews]
        (workdir / "bodies.jsonl").write_bytes(b"\n".join(bodies) + b"\n")
        (workdir / "post.lua").write_text(WRK_POST_SCRIPT)

        env = {"LOG_LEVEL": "WARNING"}
        if args.workers:
            env["WEB_CONCURRENCY"] = str(args.workers)
        if args.capture_overhead:
            print(json.dumps(capture_overhead(args, model, workdir, env)))
            return 0
        if args.baseline_python:
            if not args.baseline_model:
                raise WorkloadError("--baseline-python needs --baseline-model, a bundle the baseline trained")
            print(json.dumps(compare_with_baseline(args, model, bodies, workdir, env)))
            return 0
        server = ServerProcess(model, env={**os.environ, **env}, log_path=workdir / "server.log")
        with server:
            start_to_ready = server.wait_ready(timeout=120)
            sequential_latencies_ms(server.port, bodies, 200)  # warm-up: caches, allocator, branch predictors
            latencies = sequential_latencies_ms(server.port, bodies, args.sequential)
            static_rps, predict_rps = [], []
            for _ in range(args.rounds):
                static_rps.append(
                    wrk_requests_per_second(
                        server.url + "/static/style.css", args.duration, args.connections, None, None
                    )
                )
                predict_rps.append(
                    wrk_requests_per_second(
                        server.url + "/predict",
                        args.duration,
                        args.connections,
                        workdir / "post.lua",
                        workdir / "bodies.jsonl",
                    )
                )
            health = server.health()
            workers = server.worker_pids()
            worker_peak_rss = max(peak_rss_mb(pid) for pid in workers)
            under_load = health_under_load(server, workdir, args.load_duration, args.load_connections)

    words = [len(text.split()) for text in reviews]
    static, predict = statistics.mean(static_rps), statistics.mean(predict_rps)
    # Each predict run is paired with the static run just before it; the median pair ratio shrugs off a burst of
    # load from other processes on this shared machine that hits one run and not its partner.
    pair_ratios = [predict_run / static_run for static_run, predict_run in zip(static_rps, predict_rps, strict=True)]
    figures = {
        "model_version": health.get("model_version"),
        "reviews": "imdb" if args.reviews else "synthetic",
        "review_words_median": statistics.median(words),
        "review_words_mean": round(statistics.mean(words), 1),
        "start_to_ready_s": round(start_to_ready, 2),
        "workers": len(workers),
        "worker_peak_rss_mb": round(worker_peak_rss, 1),
        "sequential_requests": len(latencies),
        "p50_ms": round(percentile(latencies, 50), 2),
        "p90_ms": round(percentile(latencies, 90), 2),
        "p99_ms": round(percentile(latencies, 99), 2),
        "mean_ms": round(statistics.mean(latencies), 2),
        "connections": args.connections,
        "static_rps": round(static, 1),
        "predict_rps": round(predict, 1),
        "throughput_ratio": round(statistics.median(pair_ratios), 3),
        "rounds": {
            "static_rps": [round(v, 1) for v in static_rps],
            "predict_rps": [round(v, 1) for v in predict_rps],
            "ratios": [round(v, 3) for v in pair_ratios],
        },
        "health_under_load": under_load,
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    figures["targets"] = TARGETS
    figures["pass"] = {
        "p50_ms": figures["p50_ms"] <= TARGETS["p50_ms"],
        "p99_ms": figures["p99_ms"] <= TARGETS["p99_ms"],
        "throughput_ratio": figures["throughput_ratio"] >= TARGETS["throughput_ratio"],
        "start_to_ready_s": figures["start_to_ready_s"] <= TARGETS["start_to_ready_s"],
        "health_p99_ms": under_load["health_failures"] == 0 and under_load["health_p99_ms"] <= TARGETS["health_p99_ms"],
        "worker_peak_rss_mb": figures["worker_peak_rss_mb"] <= TARGETS["worker_peak_rss_mb"],
    }
    print(json.dumps(figures))
    return 0


def run_benchmark(main: Callable[[], int]) -> None:
    """Exit with `main()`'s status; a WorkloadError (no wrk, a server that never got ready) is one `error:` line
    and status 2, so a benchmark's own verdict can use status 1."""
    try:
        sys.exit(main())
    except WorkloadError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run_benchmark(main)
