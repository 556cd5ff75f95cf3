"""Kill test: SIGKILL a gunicorn worker 3 times while clients drive `POST /predict`; print ONE JSON line.

    python benchmarks/faults.py [--model MODEL_URI] [--clients 16] [--duration 20] [--kills 3]

It starts the real server (`python -m workload serve`, 2 workers) on 127.0.0.1 with a real bundle (a small one
trained on the synthetic corpus unless `--model` is given), runs `--clients` threads that each send one
`POST /predict` per new connection (no keep-alive) for `--duration` seconds, and SIGKILLs one worker at even
intervals, each time waiting for gunicorn's replacement. It counts 2xx, 4xx, 5xx and connection errors.

A sync worker holds exactly one request at a time, so each kill can cut at most the one request it was inside:
`connection_errors <= kills` is the floor. Any 5xx, or more connection errors than kills, means requests that
reached a worker were lost (before load-before-accept, a replacement worker answered 503 while it loaded).
Bar: `5xx == 0` and `connection_errors <= kills`.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import signal
import tempfile
import threading
import time
from pathlib import Path

from serve import quick_bundle, run_benchmark, synthetic_reviews
from workload.errors import WorkloadError
from workload_devtools.server_process import ServerProcess

WORKERS = 2


class Tally:
    """Outcome counts shared by the client threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: collections.Counter[str] = collections.Counter()

    def add(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1


def outcome_of(port: int, body: bytes) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        connection.request("POST", "/predict", body=body, headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        return f"{response.status // 100}xx"
    except (OSError, http.client.HTTPException) as error:  # reset, refused, closed mid-response, timeout
        return f"connection_error:{type(error).__name__}"
    finally:
        connection.close()


def drive(port: int, bodies: list[bytes], offset: int, until: float, tally: Tally) -> None:
    index = offset
    while time.monotonic() < until:
        tally.add(outcome_of(port, bodies[index % len(bodies)]))
        index += 1


def kill_workers(server: ServerProcess, kills: int, interval: float) -> list[dict[str, float]]:
    """SIGKILL one worker every `interval` s; returns when each replacement appeared."""
    events = []
    for _ in range(kills):
        time.sleep(interval)
        before = server.worker_pids()
        victim = max(before)  # the newest worker: after the first kill, the one that was just replaced
        os.kill(victim, signal.SIGKILL)
        killed = time.monotonic()
        while len((now := server.worker_pids()) - (before - {victim})) < 1 or victim in now:
            if time.monotonic() - killed > 30:
                raise WorkloadError("gunicorn did not replace the killed worker within 30 s")
            time.sleep(0.01)
        events.append({"victim": victim, "replaced_after_s": round(time.monotonic() - killed, 3)})
    return events


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model bundle URI (default: train a small synthetic bundle)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (default 16)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds of load (default 20)")
    parser.add_argument("--kills", type=int, default=3, help="worker kills during the load (default 3)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        workdir = Path(tmp)
        model = args.model or str(quick_bundle(workdir))
        bodies = [json.dumps({"text": text}).encode() for text in synthetic_reviews(200, seed=0)]
        env = {**os.environ, "WEB_CONCURRENCY": str(WORKERS), "LOG_LEVEL": "WARNING"}
        with ServerProcess(model, env=env, log_path=workdir / "server.log") as server:
            server.wait_ready(timeout=120)
            tally = Tally()
            until = time.monotonic() + args.duration
            clients = [
                threading.Thread(target=drive, args=(server.port, bodies, 7 * n, until, tally), daemon=True)
                for n in range(args.clients)
            ]
            for client in clients:
                client.start()
            kills = kill_workers(server, args.kills, interval=args.duration / (args.kills + 1))
            for client in clients:
                client.join(timeout=args.duration + 60)

    counts = tally.counts
    connection_errors = sum(v for k, v in counts.items() if k.startswith("connection_error"))
    figures = {
        "workers": WORKERS,
        "clients": args.clients,
        "duration_s": args.duration,
        "requests": sum(counts.values()),
        "2xx": counts["2xx"],
        "4xx": counts["4xx"],
        "5xx": counts["5xx"],
        "connection_errors": connection_errors,
        "connection_error_kinds": {k.split(":", 1)[1]: v for k, v in counts.items() if ":" in k},
        "kills": kills,
        "pass": counts["5xx"] == 0 and connection_errors <= len(kills),
    }
    print(json.dumps(figures))
    return 0 if figures["pass"] else 1


if __name__ == "__main__":
    run_benchmark(main)
