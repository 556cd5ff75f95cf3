"""gunicorn settings for `python -m workload serve` (also usable directly: `gunicorn -c gunicorn.conf.py`).

This file runs in the gunicorn master, which must never import torch: the app (and with it the model) is
loaded in each worker after fork (`preload_app = False`), because forking after torch has started its thread
pools deadlocks. Each worker loads its model before its accept loop (`post_worker_init`), and the master serves
the ops port (`/health`, `/metrics`, ...; `workload.serving.ops`) from a thread started in `when_ready`.
"""

import os
import shutil
import tempfile

from workload.serving.logs import logconfig_dict as _logconfig_dict

# prometheus-client picks multiprocess mode when it is *imported*, so the directory must exist in the
# environment before any worker starts. A fresh directory per server: stale files would resurrect old counts.
_metrics_dir_is_ours = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _metrics_dir_is_ours:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="workload-prometheus-")

# One torch thread per worker: parallelism comes from worker processes, and oversubscribed OpenMP pools on
# a small box cost more latency than they save. Inherited by workers, read by torch when it starts.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
# Same for the Rust tokenizer: one review per request, so its thread pool would only add hand-off cost.
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

wsgi_app = "workload.serving.app:create_app()"
bind = [os.environ.get("GUNICORN_BIND", "127.0.0.1:8080")]
# The ops port, on the app's host (see `when_ready`).
_ops_port = int(os.environ.get("OPS_PORT", "8081"))
# Inference is CPU-bound and single-threaded per worker: one worker per core, and at least two so that a
# restarted worker never leaves the service without a ready one. Each worker holds its own model copy.
# The default only: `-w` and GUNICORN_CMD_ARGS override it after this file has run (see `on_starting`).
workers = int(os.environ.get("WEB_CONCURRENCY") or max(2, len(os.sched_getaffinity(0))))
# sync workers: inference is CPU-bound, so a worker serves one request at a time and accepts a connection only
# when it is free. That keeps the load even: with one-thread gthread workers, keep-alive connections (an ALB's
# pool, a load generator's) could pile up on one worker while another idled, halving throughput in the
# benchmark. A sync worker answers with `Connection: close`, so the ALB never reuses a dropped connection.
# Sync workers need a buffering proxy in front: the ALB forwards only complete requests. Reached directly, an
# idle or very slow client holds a worker until GUNICORN_TIMEOUT, when the master kills that worker and a new
# one starts (and reloads the model).
# The sync worker, with the security headers and the API's error shape on gunicorn's own error responses too.
worker_class = "workload.serving.worker.SecureSyncWorker"
preload_app = False
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "30"))
# SIGTERM: stop accepting, let in-flight requests finish within this many seconds (ECS stopTimeout is 30 s).
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "25"))

# No runtime control socket: nothing uses it, and its default path ($HOME/.gunicorn) is shared between servers.
control_socket_disable = True

accesslog = "-"
errorlog = "-"
logger_class = "workload.serving.logs.JsonAccessLogger"
logconfig_dict = _logconfig_dict(os.environ.get("LOG_LEVEL", "INFO").upper())


def when_ready(server):  # noqa: ANN001, ANN201 - gunicorn hook signature
    # Before the first worker forks, in the master, which serves the ops port for the lifetime of the server.
    # Imported here, after PROMETHEUS_MULTIPROC_DIR is set; neither module imports Flask or torch.
    from workload.serving.openapi import openapi_document
    from workload.serving.ops import OpsServer, ready_workers
    from workload.serving.settings import ServeSettings

    address = server.cfg.address[0]
    host = address[0] if isinstance(address, tuple) else "127.0.0.1"  # a unix-socket app: ops on loopback
    directory = os.environ["PROMETHEUS_MULTIPROC_DIR"]
    try:
        server.ops_server = OpsServer(
            (host, _ops_port), lambda: ready_workers(directory), openapi_document(ServeSettings.from_mapping())
        ).start()
    except OSError as error:
        server.log.error("cannot serve the ops port on %s:%s: %s", host, _ops_port, error)
        raise SystemExit(1) from None
    server.log.info("ops port (/health, /health/live, /metrics, /openapi.json) at http://%s:%s", host, _ops_port)


def post_fork(server, worker):  # noqa: ANN001, ANN201 - gunicorn hook signature
    # The worker inherited the ops listening socket with the fork; only the master serves it.
    server.ops_server.socket.close()


def post_worker_init(worker):  # noqa: ANN001, ANN201 - gunicorn hook signature
    # Load (and self-test) the model before this worker's accept loop: until then it takes no connection, so
    # a worker that replaces a killed one never answers 503. The heartbeat keeps the master from timing it out
    # while a missing bundle is retried; a SIGTERM (worker.alive False) ends the retries.
    # On a short-lived thread: glibc gives a thread its own malloc arena, so the load's temporary allocations
    # stay out of the heap this worker's requests allocate from. Loaded on the main thread they fragmented it,
    # and malloc's free-list upkeep took 3.9 % of the worker's CPU under load, against 0.8 % (docs/benchmarks.md).
    import threading

    from workload.serving.app import model_holder

    holder = model_holder(worker.wsgi)
    loader = threading.Thread(
        target=holder.load_until_ready,
        kwargs={"keep_going": lambda: worker.alive, "heartbeat": worker.notify},
        name="model-loader",
        daemon=True,
    )
    loader.start()
    loader.join()


def child_exit(server, worker):  # noqa: ANN001, ANN201 - gunicorn hook signature
    # Imported here, after PROMETHEUS_MULTIPROC_DIR is set: drops the dead worker's live-gauge files.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server):  # noqa: ANN001, ANN201 - gunicorn hook signature
    if getattr(server, "ops_server", None) is not None:
        server.ops_server.stop()
    if _metrics_dir_is_ours:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def worker_exit(server, worker):  # noqa: ANN001, ANN201 - gunicorn hook signature
    # Runs in the worker on a graceful stop: write out the data-capture records still buffered.
    from workload.serving.capture import close_all

    close_all()
