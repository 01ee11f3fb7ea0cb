"""The REST service under load, on a real uvicorn server on loopback (printed, not asserted).

    python benchmarks/bench_service.py            # 1,000,000-step history (about 30 s to write)
    BENCH_STEPS=100000 python benchmarks/bench_service.py

1. Submission to running with a free worker: POST /jobs until the worker's "running" transition is
   committed (target < 200 ms), beside the GET /health round trip measured in the same run.
2. A 1,000,000-step history (written through the store's HistoryWriter, as the trainer writes it)
   downsampled to 1,000 buckets, 20 concurrent clients: p95 target <= 100 ms. Measured for the same
   query (answered from the version-keyed cache after the first) and for distinct windows (every
   request computed: SQL over the rollups plus JSON), beside /health under the same 20 clients.
3. Event-stream latency: steps committed by a writer in this process, received by an SSE client
   through the server (target < 1 s), beside the stream's poll interval.
4. Cancel mid-training: the POST answers once the worker has stopped the job (target < 2 s).
"""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path

import numpy as np

from service.jobs import presets
from service.store import Store

STEPS = int(os.environ.get("BENCH_STEPS", "1000000"))
CLIENTS = 20
REQUESTS_PER_CLIENT = 25


def pct(values, q) -> float:
    return float(np.percentile(np.asarray(values) * 1e3, q))


def summary(values) -> str:
    return f"p50 {pct(values, 50):7.1f} ms   p95 {pct(values, 95):7.1f} ms   max {pct(values, 100):7.1f} ms"


# --- the server ---------------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Server:
    """uvicorn binding host and port itself, as `gradbook serve` does (a socket handed over with --fd
    is taken for a Unix socket, so TCP_NODELAY is never set and small answers stall 40 ms on
    delayed ACKs)."""

    def __init__(self, workdir: Path, database_url: str):
        self.port = free_port()
        env = {**os.environ, "GRADBOOK_DATABASE_URL": database_url}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "--factory", "service.api.app:create_app",
             "--host", "127.0.0.1",
             "--port", str(self.port), "--log-level", "warning"], env=env, cwd=workdir)
        deadline = time.monotonic() + 60
        while True:
            try:
                health = self.get_json("/health")
                if health["executor"]["ready"] == health["executor"]["workers"]:
                    self.workers = health["executor"]["workers"]
                    return
            except OSError:
                pass
            if time.monotonic() > deadline or self.process.poll() is not None:
                raise RuntimeError("the server did not come up")
            time.sleep(0.1)

    def connection(self) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)

    def get_json(self, path: str):
        conn = self.connection()
        try:
            conn.request("GET", path)
            return json.loads(conn.getresponse().read())
        finally:
            conn.close()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        self.process.wait(30)


def timed(conn: http.client.HTTPConnection, method: str, path: str, body=None, headers=None):
    t0 = time.perf_counter()
    conn.request(method, path, body=body, headers=headers or {})
    response = conn.getresponse()
    data = response.read()
    return time.perf_counter() - t0, response.status, data


def concurrently(server: Server, paths_of_client) -> list[float]:
    """Each of CLIENTS threads sends its paths over one keep-alive connection; all latencies."""
    latencies: list[float] = []
    lock = threading.Lock()
    start = threading.Barrier(CLIENTS)

    def client(i):
        conn = server.connection()
        mine = []
        start.wait()
        for path in paths_of_client(i):
            seconds, status, _ = timed(conn, "GET", path)
            assert status == 200, status
            mine.append(seconds)
        conn.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies


# --- the book to read ---------------------------------------------------------------------------------------


def write_history(store: Store, steps: int) -> int:
    """A finished job with ``steps`` recorded steps and two parameters, through the real writer."""
    job = store.create_job("bench-history", {"steps": steps}, status="running")
    writer = store.writer(job, ["w1", "b1"])
    rng = np.random.default_rng(0)
    stats = np.zeros((2, 6))
    noise = rng.random(steps)
    for step in range(steps):
        loss = 1.0 / (1.0 + step) + 1e-3 * noise[step]
        stats[:, 0] = loss
        writer.add_step(step, loss, 0.01, 2.0 * loss, stats)
        if step % 20_000 == 19_999:
            writer.flush()
    writer.flush()
    store.transition(job, "succeeded")
    return job


# --- the measurements ---------------------------------------------------------------------------------------


def bench_submission(server: Server, rounds: int = 20):
    conn = server.connection()
    rtts, to_running, queued_to_running = [], [], []
    spec = presets.get("seed")
    spec["steps"] = 5
    body = json.dumps(spec)
    for _ in range(rounds):
        wall0 = time.time()
        seconds, status, data = timed(conn, "POST", "/jobs", body, {"Content-Type": "application/json"})
        assert status == 201, data
        rtts.append(seconds)
        job_id = json.loads(data)["id"]
        while True:  # wait for it to end, so the next submission finds a free worker
            _, _, job = timed(conn, "GET", f"/jobs/{job_id}")
            if json.loads(job)["status"] not in ("queued", "running"):
                break
            time.sleep(0.01)
        _, _, raw = timed(conn, "GET", f"/jobs/{job_id}/transitions")
        changes = json.loads(raw)["transitions"]
        at = {t["to_status"]: datetime.fromisoformat(t["at"]).timestamp() for t in changes}
        to_running.append(at["running"] - wall0)
        queued_to_running.append(at["running"] - at["queued"])
    conn.close()
    return rtts, to_running, queued_to_running


def bench_history(server: Server, job_id: int):
    full = f"/jobs/{job_id}/history?max_points=1000"
    rng = random.Random(1)

    def window() -> str:  # a different 90%-of-the-run range each time: computed, not cached
        start = rng.randrange(0, STEPS // 10)
        return f"/jobs/{job_id}/history?start={start}&end={start + STEPS * 9 // 10}&max_points=1000"

    conn = server.connection()
    cold_single = [timed(conn, "GET", window())[0] for _ in range(30)]
    warm_single = [timed(conn, "GET", full)[0] for _ in range(30)]
    _, _, body = timed(conn, "GET", full)
    points = json.loads(body)["points"]
    conn.close()
    health = concurrently(server, lambda i: ["/health"] * REQUESTS_PER_CLIENT)
    same = concurrently(server, lambda i: [full] * REQUESTS_PER_CLIENT)
    distinct = concurrently(server, lambda i: [window() for _ in range(REQUESTS_PER_CLIENT)])
    return len(points), len(body), cold_single, warm_single, health, same, distinct


def bench_events(server: Server, store: Store, seconds: float = 3.0, every: float = 0.05, per_flush: int = 5):
    """Steps written here, in batches every ``every`` s; the time each reaches an SSE client."""
    job = store.create_job("bench-events", {"steps": 10**6}, status="running")
    writer = store.writer(job, ["w"])
    committed: dict[int, float] = {}
    received: dict[int, float] = {}
    connected = threading.Event()

    def listen():
        conn = server.connection()
        conn.request("GET", f"/jobs/{job}/events?after=-1", headers={"Accept": "text/event-stream"})
        response = conn.getresponse()
        connected.set()
        event = step = None
        while True:
            line = response.fp.readline()
            if not line:
                break
            line = line.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("id: "):
                step = int(line[4:])
            elif line == "":
                if event == "step":
                    received[step] = time.perf_counter()
                if event == "end":
                    break
                event = step = None
        conn.close()

    listener = threading.Thread(target=listen)
    listener.start()
    connected.wait(30)
    step = 0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        batch = range(step, step + per_flush)
        for s in batch:
            writer.add_step(s, 1.0 / (1 + s), 0.1, 1.0, np.zeros((1, 6)))
        writer.flush()
        now = time.perf_counter()
        for s in batch:
            committed[s] = now
        step += per_flush
        time.sleep(every)
    store.transition(job, "succeeded")
    listener.join(30)
    missing = sorted(set(committed) - set(received))
    latencies = [received[s] - committed[s] for s in committed if s in received]
    return latencies, missing, len(committed)


def bench_cancel(server: Server, rounds: int = 10) -> list[float]:
    """POST cancel of a job mid-training; the answer comes once its worker has stopped it."""
    conn = server.connection()
    spec = presets.get("seed")
    spec["steps"] = 1_000_000
    body = json.dumps(spec)
    took = []
    for _ in range(rounds):
        _, _, data = timed(conn, "POST", "/jobs", body, {"Content-Type": "application/json"})
        job_id = json.loads(data)["id"]
        while json.loads(timed(conn, "GET", f"/jobs/{job_id}")[2])["steps_done"] < 100:
            time.sleep(0.01)
        seconds, status, data = timed(conn, "POST", f"/jobs/{job_id}/cancel")
        assert status == 200 and json.loads(data)["status"] == "cancelled"
        assert job_id not in server.get_json("/health")["executor"]["running"]
        took.append(seconds)
    conn.close()
    return took


def main() -> None:
    workdir = Path(tempfile.mkdtemp(prefix="gradbook-bench-"))
    url = f"sqlite:///{workdir / 'gradbook.db'}"
    store = Store(url)
    t0 = time.perf_counter()
    history_job = write_history(store, STEPS)
    wrote = time.perf_counter() - t0
    print(f"wrote a {STEPS:,}-step history (2 parameters) through HistoryWriter in {wrote:.1f} s "
          f"({STEPS * 3 / wrote:,.0f} rows/s)")
    server = Server(workdir, url)
    print(f"uvicorn on 127.0.0.1:{server.port}, {server.workers} worker process(es), "
          f"{os.cpu_count()} cores\n")
    try:
        conn = server.connection()
        health_single = [timed(conn, "GET", "/health")[0] for _ in range(200)]
        conn.close()
        print(f"baseline   GET /health, one client           {summary(health_single)}")

        rtts, to_running, queued_to_running = bench_submission(server)
        print("\n1. submission to running, free worker (target < 200 ms)")
        print(f"   POST /jobs round trip                     {summary(rtts)}")
        print(f"   POST sent -> running committed            {summary(to_running)}"
              f"   ({pct(to_running, 50) / pct(health_single, 50):.0f}x the /health round trip)")
        print(f"   queued -> running (database timestamps)   {summary(queued_to_running)}")

        n_points, n_bytes, cold, warm, health20, same, distinct = bench_history(server, history_job)
        print(f"\n2. {STEPS:,}-step history -> {n_points} buckets ({n_bytes / 1024:.0f} kB of JSON); "
              "target p95 <= 100 ms with 20 clients")
        print(f"   one client, distinct windows (computed)   {summary(cold)}")
        print(f"   one client, same query (cached)           {summary(warm)}")
        print(f"   20 clients, GET /health (baseline)        {summary(health20)}")
        print(f"   20 clients, same query                    {summary(same)}"
              f"   (p95 {pct(same, 95) / pct(health20, 95):.1f}x /health's)")
        print(f"   20 clients, distinct windows (computed)   {summary(distinct)}"
              f"   (p95 {pct(distinct, 95) / pct(health20, 95):.1f}x /health's)")

        latencies, missing, sent = bench_events(server, store)
        print("\n3. event stream: step committed -> received by an SSE client (target < 1 s)")
        print(f"   {sent} steps in batches of 5 every 50 ms   {summary(latencies)}"
              f"   (poll interval 100 ms); missing: {len(missing)}")

        took = bench_cancel(server)
        print("\n4. cancel mid-training: POST /jobs/{id}/cancel, answered once the worker stopped "
              "(target < 2 s)")
        print(f"   10 running jobs                           {summary(took)}")
    finally:
        server.stop()
        store.close()


if __name__ == "__main__":
    main()
