"""Serving benchmark: the app under concurrent load, and what the API costs over the engine.

    .venv/bin/python benchmarks/bench_server.py [--clients 16] [--requests 5] [--queue-size 16]

Both parts launch the real `python app.py` on a tiny untrained policy on a free port.

1. Load, both ways in one run: the app answering one request at a time (`--no-shared-batch
   --concurrency 1`, the serialised engine) and with every request's rows in one shared running
   batch (the default). `--clients` concurrent `gradio_client` clients each send `--requests`
   requests to `/answer` (default checks: 4 rows a request). Printed: answered / refused (the
   bounded queue said it is full) / lost (anything else: an exception, a timeout, a malformed
   answer; must be 0), p50/p95 latency, answers per second, and for the shared batch the
   streaming time to first token of one more client (`/answer_stream`) while the load runs.
   Targets: throughput >= 3x the serialised engine's, p95 <= 0.5x.
2. Overhead: the same case at 256 new tokens per mode, end to end through `/answer` (with
   `gradio_client`, and with plain HTTP on Gradio's REST routes) versus a direct
   `PolicyEngine.answer` in a quiet process of its own, round by round: the ratio of medians
   (target <= 1.10). Steadier on a busy machine: end to end over the engine time the server
   measured inside the same request. Token counts are forced equal with `--exact-length`.
   `gradio_client` polls its message queue every 50 ms, which shows in its figures.
   Serving adds a fixed cost per request (tens of milliseconds), so the ratio depends on how long
   generation takes: the tiny policy answers 256 tokens in well under a second, far faster than
   Med-R1-2B on a GPU (seconds). The overhead part therefore runs on a `--overhead-policy small`
   random checkpoint (~20 M parameters, seconds per answer on CPU) by default; `tiny` shows the
   worst case.
"""

import argparse
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")  # the same thread budget as the server process

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

QUESTION = "Which imaging modality is used?"
# Sizes for the tiny factory: "small" makes generation take seconds, like a real policy does.
OVERHEAD_POLICIES = {
    "tiny": {},
    "small": {
        "text_hidden": 512,
        "text_layers": 6,
        "heads": 8,
        "kv_heads": 4,
        "intermediate": 1536,
    },
}
OPTIONS = ["CT", "MRI", "X-Ray", "Ultrasound"]


def launch(folder: Path, checkpoint: Path, *args: str):
    """`python app.py` on a free port; returns (process, url) once the page answers."""
    import socket
    import subprocess
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = dict(os.environ, GRADIO_TEMP_DIR=str(folder / "uploads"), MEDR1_CACHE=str(folder))
    log = open(folder / f"server-{port}.log", "wb")  # noqa: SIM115 (lives as long as the server)
    command = [
        sys.executable,
        str(ROOT / "app.py"),
        "--model",
        str(checkpoint),
        "--port",
        str(port),
    ]
    process = subprocess.Popen([*command, *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"app.py exited early; see {log.name}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return process, url
        except OSError:
            time.sleep(0.3)
    process.kill()
    raise SystemExit("app.py did not start within 120 s")


def stop(process) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except Exception:
        process.kill()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def first_token(url: str, scan: Path, delay: float, out: dict) -> None:
    """After `delay` s, one streaming request: seconds until its first partial with tokens."""
    from gradio_client import Client, handle_file

    client = Client(url, verbose=False)
    time.sleep(delay)
    began = time.perf_counter()
    job = client.submit(
        scan=handle_file(str(scan)), question=QUESTION, options=OPTIONS,
        api_name="/answer_stream",
    )  # fmt: skip
    while not job.done():
        outputs = job.outputs()
        if outputs and any(a["tokens"] for a in outputs[-1].get("answers", {}).values()):
            out["first token"] = time.perf_counter() - began
            break
        time.sleep(0.01)
    job.result()
    out.setdefault("first token", None)
    out["streamed answer"] = time.perf_counter() - began
    client.close()


def load_test(url: str, scan: Path, clients: int, requests: int, stream_probe=False) -> dict:
    from gradio_client import Client, handle_file

    outcomes = {"answered": 0, "refused": 0, "lost": 0}
    latencies: list[float] = []
    lost_reasons: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(clients)

    def one_client() -> None:
        client = Client(url, verbose=False)
        start.wait()  # all clients fire together
        for _ in range(requests):
            began = time.perf_counter()
            try:
                result = client.predict(
                    scan=handle_file(str(scan)), question=QUESTION, options=OPTIONS,
                    api_name="/answer",
                )  # fmt: skip
                kind = "answered" if result.get("ok") and result.get("done") else "lost"
                reason = None if kind == "answered" else f"not answered: {result.get('error')}"
            except Exception as error:  # the queue's refusal arrives as an exception
                full = "queue is full" in str(error).lower()
                kind, reason = (
                    ("refused", None) if full else ("lost", f"{type(error).__name__}: {error}")
                )
            with lock:
                outcomes[kind] += 1
                if kind == "answered":
                    latencies.append(time.perf_counter() - began)
                if reason:
                    lost_reasons.append(reason)
        client.close()

    threads = [threading.Thread(target=one_client) for _ in range(clients)]
    probe: dict = {}
    if stream_probe:  # fired once the load is running
        threads.append(threading.Thread(target=first_token, args=(url, scan, 1.0, probe)))
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    stats = {**outcomes, "wall": wall, "per_second": outcomes["answered"] / wall, **probe}
    stats["p50"] = percentile(latencies, 0.5) if latencies else None
    stats["p95"] = percentile(latencies, 0.95) if latencies else None
    print(f"  {clients} clients x {requests} requests in {wall:.1f} s")
    print(
        f"  answered {outcomes['answered']}  refused {outcomes['refused']}  lost {outcomes['lost']}"
        f"  ({stats['per_second']:.2f} answers/s)"
    )
    if latencies:
        print(f"  latency p50 {stats['p50']:.2f} s  p95 {stats['p95']:.2f} s")
    if probe.get("first token") is not None:
        print(
            f"  streaming under load: first token after {probe['first token']:.2f} s, "
            f"whole answer {probe['streamed answer']:.2f} s"
        )
    for reason in lost_reasons[:5]:
        print(f"  lost: {reason}")
    return stats


def direct_worker(checkpoint: str, scan: str, tokens: int) -> int:
    """A quiet process of its own that answers the benchmark case once per line on stdin.

    Kept out of the benchmark process, whose `gradio_client` threads would slow the direct call.
    """
    import json

    from medr1_demo.config import DecodingConfig
    from medr1_demo.policy.engine import PolicyEngine
    from medr1_demo.scan.reader import load_scan

    engine = PolicyEngine.load(checkpoint, device="cpu")
    settings = DecodingConfig(
        max_new_tokens_thinking=tokens, max_new_tokens_no_thinking=tokens, exact_length=True
    )
    image = load_scan(scan).image
    print(json.dumps({"ready": True}), flush=True)
    for _ in sys.stdin:
        began = time.perf_counter()
        answers = engine.answer(image, QUESTION, OPTIONS, settings=settings)
        seconds = time.perf_counter() - began
        print(
            json.dumps({"seconds": seconds, "tokens": {m: a.tokens for m, a in answers.items()}}),
            flush=True,
        )
    return 0


def http_answer(http, url: str, scan: Path) -> dict:
    """One `/answer` through Gradio's REST routes (upload, call, read the event stream)."""
    import json

    from medr1_demo.web.layout import API_INPUTS

    base = url.rstrip("/") + "/gradio_api"
    with open(scan, "rb") as file:
        path = http.post(f"{base}/upload", files={"files": (scan.name, file)}).json()[0]
    upload = {"path": path, "meta": {"_type": "gradio.FileData"}}
    given = {"scan": upload, "question": QUESTION, "options": OPTIONS,
             "modes": ["thinking", "no-thinking"], "window": "auto"}  # fmt: skip
    body = {"data": [given.get(name) for name in API_INPUTS]}  # every input, by position
    event = http.post(f"{base}/call/answer", json=body).json()["event_id"]
    kind = None
    with http.stream("GET", f"{base}/call/answer/{event}") as stream:
        for line in stream.iter_lines():
            if line.startswith("event:"):
                kind = line.removeprefix("event:").strip()
            elif line.startswith("data:") and kind == "complete":
                return json.loads(line.removeprefix("data:"))[0]
            elif line.startswith("data:") and kind == "error":
                raise RuntimeError(line)
    raise RuntimeError("the event stream ended without a result")


def overhead(url: str, scan: Path, checkpoint: Path, rounds: int, tokens: int) -> None:
    import json
    import subprocess

    import httpx
    from gradio_client import Client, handle_file

    worker = subprocess.Popen(
        [sys.executable, __file__, "--direct-worker", str(checkpoint), str(scan), str(tokens)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    json.loads(worker.stdout.readline())  # loaded
    client, http = Client(url, verbose=False), httpx.Client(timeout=120)
    ways = {
        "gradio_client": lambda: client.predict(
            scan=handle_file(str(scan)), question=QUESTION, options=OPTIONS, api_name="/answer"
        ),
        "HTTP (REST)": lambda: http_answer(http, url, scan),
    }
    direct = []
    total = {name: [] for name in ways}
    inside = {name: [] for name in ways}  # the engine time the server measured in that request
    try:
        for _ in range(rounds + 1):  # the first round warms every side and is dropped
            worker.stdin.write("go\n")
            worker.stdin.flush()
            reply = json.loads(worker.stdout.readline())
            direct.append(reply["seconds"])
            for name, ask in ways.items():
                began = time.perf_counter()
                result = ask()
                total[name].append(time.perf_counter() - began)
                inside[name].append(max(a["seconds"] for a in result["answers"].values()))
                served_tokens = {m: a["tokens"] for m, a in result["answers"].items()}
                if served_tokens != reply["tokens"]:
                    print(f"  note: tokens differ: {name} {served_tokens} vs {reply['tokens']}")
    finally:
        worker.stdin.close()
        worker.wait()
        http.close()
        client.close()
    d = statistics.median(direct[1:])
    print(f"overhead at {tokens} new tokens per mode ({rounds} rounds, tokens {reply['tokens']}):")
    print(f"  direct engine call (own process): median {d:.3f} s")
    for name in ways:
        served, engine = total[name][1:], inside[name][1:]
        s = statistics.median(served)
        # Within one request both sides share every disturbance of a busy machine.
        same = statistics.median(t / e for t, e in zip(served, engine, strict=True))
        extra = statistics.median(t - e for t, e in zip(served, engine, strict=True))
        print(
            f"  {name:14} end to end median {s:.3f} s  ratio {s / d:.3f} (target <= 1.10);"
            f" engine inside the server {statistics.median(engine):.3f} s;"
            f" same request {same:.3f}, adds {extra * 1000:.0f} ms"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--queue-size", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--overhead-policy", choices=sorted(OVERHEAD_POLICIES), default="small")
    parser.add_argument(
        "--parts", nargs="+", choices=["load", "overhead"], default=["load", "overhead"]
    )
    parser.add_argument("--direct-worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.direct_worker:
        checkpoint, scan, tokens = args.direct_worker
        return direct_worker(checkpoint, scan, int(tokens))

    from pydicom.data import get_testdata_file

    from medr1_demo.policy.tiny import build_tiny_checkpoint

    scan = Path(get_testdata_file("CT_small.dcm", download=False))
    with tempfile.TemporaryDirectory(prefix="medr1-bench-") as folder:
        folder = Path(folder)
        checkpoint = build_tiny_checkpoint(folder / "tiny", seed=0)

        ways = {
            "serialised engine (--no-shared-batch --concurrency 1)": (
                "--no-shared-batch", "--concurrency", "1",
            ),
            "shared running batch (default)": (),
        }  # fmt: skip
        found = {}
        for name, flags in ways.items() if "load" in args.parts else ():
            print(f"load, {name}:")
            process, url = launch(folder, checkpoint, "--queue-size", str(args.queue_size), *flags)
            try:
                found[name] = load_test(
                    url, scan, args.clients, args.requests, stream_probe=not flags
                )
            finally:
                stop(process)
        alone, shared = found.values() if found else ({}, {})
        if found and alone["per_second"] and alone["p95"] and shared["p95"]:
            print(
                f"shared / serialised: throughput {shared['per_second'] / alone['per_second']:.2f}x"
                f" (target >= 3), p95 {shared['p95'] / alone['p95']:.2f}x (target <= 0.5)"
            )

        if "overhead" not in args.parts:
            return 0
        tokens = str(args.tokens)
        sizes = OVERHEAD_POLICIES[args.overhead_policy]
        if sizes:
            checkpoint = build_tiny_checkpoint(folder / args.overhead_policy, seed=0, **sizes)
        print(f"overhead policy: {args.overhead_policy}")
        process, url = launch(
            folder, checkpoint, "--max-new-tokens", tokens, "--max-new-tokens-no-thinking", tokens,
            "--exact-length",
        )  # fmt: skip
        try:
            overhead(url, scan, checkpoint, args.rounds, args.tokens)
        finally:
            stop(process)
    return 0


if __name__ == "__main__":
    sys.exit(main())
