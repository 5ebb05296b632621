"""A bounded load test of ``ptmzoo serve`` on loopback: dynamic batching vs one request at a time.

The script builds a classifier from random initialisation in a temporary directory (BERT-small's
shape by default: 4 layers x 512 hidden, 8 heads, feed-forward 2048; a WordPiece tokenizer
trained on the SST-2 training sentences), starts two servers on free loopback ports -- one with
the default ``--max-batch``/``--max-wait-ms`` (dynamic batching), one with ``--max-batch 1`` (one
request at a time) -- and sends ``POST /v1/classify`` requests of real SST-2 sentences from
``concurrency`` client threads (each with its own keep-alive connection) at concurrency 1, 8 and
32. Each cell is bounded: it stops after ``--requests`` requests or ``--seconds`` seconds,
whichever comes first. The servers alternate within each concurrency level (the order flips
every round), so all see the same machine load; only one is under load at a time. Reported per
cell: requests/s and texts/s (completed / wall time), p50 and p99 latency (nearest rank, over
every request of every round), and the mean texts per forward pass (from ``/metrics``).

``--endpoint generate`` load-tests generation instead: a randomly initialised GPT-2-style decoder
(``--layers``/``--hidden``, a BPE tokenizer trained on the same sentences), prompts of the first
``--prompt-words`` words of SST-2 sentences, each request greedy with its own ``max_new_tokens``
(spread over ``--new-tokens MIN,MAX``), against three servers: continuous batching (the default),
the whole-batch path (``--no-continuous``) and one request at a time (``--max-batch 1``). Also
reported: new tokens/s (the ``tokens`` of the answers / wall time) and rows per decoding step.

    .venv/bin/python bench/serve_load.py                         # BERT-small shape, 1 thread per server
    .venv/bin/python bench/serve_load.py --requests 200 --seconds 15 --rounds 2 --json bench/results/serve.json
    OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 .venv/bin/python bench/serve_load.py --endpoint generate \
        --layers 4 --hidden 256 --requests 64 --seconds 20 --rounds 1
"""

from __future__ import annotations

import argparse
import datetime
import http.client
import json
import math
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from cpu_pretrain import CpuMonitor, cpu_model, load_average

SST2 = os.path.join(ROOT, "..", "shared", "data", "en", "sst2", "train.tsv")


def sentences(path: str, limit: int = 4000) -> list[str]:
    with open(path, encoding="utf-8") as fh:
        rows = [line.rstrip("\n").split("\t")[0] for line in fh][1:]
    return [r.strip() for r in rows if r.strip()][:limit]


def build_checkpoint(directory: str, texts: list[str], layers: int, hidden: int, vocab: int) -> dict:
    """A randomly initialised ``layers`` x ``hidden`` BERT classifier (labels neg/pos), saved like
    ``ptmzoo finetune`` saves one; its shape."""
    import torch

    from ptmzoo.catalog import build_model
    from ptmzoo.checkpoint import save_pretrained
    from ptmzoo.data.tokenizers import train_tokenizer
    from ptmzoo.tasks import task_class, task_options

    tokenizer = train_tokenizer(iter(texts), "wordpiece", vocab)
    torch.manual_seed(0)
    shape = {"num_layers": layers, "hidden_size": hidden, "num_heads": hidden // 64, "intermediate_size": 4 * hidden}
    model = build_model("bert", {"vocab_size": tokenizer.vocab_size, **shape})
    task = task_class("classification")(task_options("classification", {"max_length": 128}), tokenizer,
                                        ["neg", "pos"], model.backbone.max_length)
    task.add_head(model)
    save_pretrained(directory, model, tokenizer, extra={"task": task.meta()})
    return {**shape, "vocab_size": tokenizer.vocab_size, "parameters": sum(p.numel() for p in model.parameters())}


def build_generator(directory: str, texts: list[str], layers: int, hidden: int, vocab: int) -> dict:
    """A randomly initialised ``layers`` x ``hidden`` GPT-2 with a causal LM head and a BPE tokenizer; its shape."""
    import torch

    from ptmzoo.catalog import build_model
    from ptmzoo.checkpoint import save_pretrained
    from ptmzoo.data.tokenizers import train_tokenizer

    tokenizer = train_tokenizer(iter(texts), "bpe", vocab)
    torch.manual_seed(0)
    shape = {"num_layers": layers, "hidden_size": hidden, "num_heads": max(1, hidden // 64),
             "intermediate_size": 4 * hidden}
    model = build_model("gpt2", {"vocab_size": tokenizer.vocab_size, **shape}, heads={"clm": {"kind": "clm"}})
    save_pretrained(directory, model, tokenizer)
    return {**shape, "vocab_size": tokenizer.vocab_size, "parameters": sum(p.numel() for p in model.parameters())}


def generation_bodies(texts: list[str], words: int, new_tokens: tuple[int, int], count: int = 1000) -> list[bytes]:
    """Greedy requests: the first ``words`` words of each text, ``max_new_tokens`` spread over the range."""
    low, high = new_tokens
    return [json.dumps({"prompts": [" ".join(text.split()[:words])],
                        "max_new_tokens": low + (i * 7919) % (high - low + 1)}).encode()
            for i, text in enumerate(texts[:count])]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model: str, threads: int, flags: list[str], endpoint: str = "classify"):
        self.port, self.flags, self.endpoint = free_port(), flags, endpoint
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
        self.process = subprocess.Popen([sys.executable, "-m", "ptmzoo", "--threads", str(threads), "serve", model,
                                         "--port", str(self.port), *flags], env=env, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if self.get("/health")[0] == 200:
                    return
            except OSError:
                if self.process.poll() is not None:
                    break
                time.sleep(0.3)
        self.process.kill()
        raise RuntimeError(f"the server did not start: {self.process.communicate()[1]}")

    def get(self, path: str) -> tuple[int, str]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        connection.request("GET", path)
        response = connection.getresponse()
        text = response.read().decode()
        connection.close()
        return response.status, text

    def batches(self) -> tuple[float, float]:
        """(forward passes, texts) of the endpoint so far (generate batched continuously: steps, rows)."""
        from ptmzoo.serve.metrics import parse_exposition

        values = parse_exposition(self.get("/metrics")[1])
        return (values.get(f'ptmzoo_batch_size_count{{endpoint="{self.endpoint}"}}', 0.0),
                values.get(f'ptmzoo_batch_size_sum{{endpoint="{self.endpoint}"}}', 0.0))

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)


def load(server: Server, bodies: list[bytes], concurrency: int, requests: int, seconds: float) -> dict:
    """Send up to ``requests`` bodies from ``concurrency`` threads for at most ``seconds``."""
    lock, state = threading.Lock(), {"next": 0}
    latencies: list[float] = []
    errors: list[str] = []
    tokens = [0]
    stop_at = time.perf_counter() + seconds

    def worker():
        connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
        while True:
            with lock:
                if state["next"] >= requests or time.perf_counter() >= stop_at:
                    break
                index = state["next"]
                state["next"] += 1
            body = bodies[index % len(bodies)]
            start = time.perf_counter()
            try:
                connection.request("POST", f"/v1/{server.endpoint}", body=body,
                                   headers={"Content-Type": "application/json"})
                response = connection.getresponse()
                answer = response.read()
                if response.status != 200:
                    errors.append(str(response.status))
                    continue
            except OSError as exc:
                errors.append(type(exc).__name__)
                connection.close()
                connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=60)
                continue
            latency = time.perf_counter() - start
            new = sum(r.get("tokens", 0) for r in json.loads(answer)["results"]) if server.endpoint == "generate" else 0
            with lock:
                latencies.append(latency)
                tokens[0] += new
        connection.close()

    before = server.batches()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    after = server.batches()
    return {"latencies": latencies, "wall": wall, "errors": errors, "tokens": tokens[0],
            "passes": after[0] - before[0], "texts_in_passes": after[1] - before[1]}


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a running process (Linux /proc; 0 elsewhere)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


class OthersMonitor(CpuMonitor):
    """CpuMonitor's share of the machine used by other processes, not counting the servers."""

    def __init__(self, pids: list[int]):
        super().__init__()
        self.pids = pids

    def start(self) -> None:
        super().start()
        self._servers = sum(map(process_cpu, self.pids))

    def others(self) -> float | None:
        machine, share = self._machine(), super().others()
        if share is None:
            return None
        total = (machine[1] - self._start[0][1]) / self._tick
        servers = sum(map(process_cpu, self.pids)) - self._servers
        return max(0.0, share - servers / total)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--vocab", type=int, default=8000)
    parser.add_argument("--concurrency", default="1,8,32")
    parser.add_argument("--requests", type=int, default=200, help="requests per cell and round (at most)")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds per cell and round (at most)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--texts", type=int, default=1, help="texts per request")
    parser.add_argument("--threads", type=int, default=1, help="torch threads of each server")
    parser.add_argument("--batched-flags", default="", help="extra flags of the batching server (default flags)")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument("--endpoint", choices=("classify", "generate"), default="classify")
    parser.add_argument("--prompt-words", type=int, default=8, help="generate: words of each prompt")
    parser.add_argument("--new-tokens", default="16,48", help="generate: MIN,MAX max_new_tokens of the requests")
    args = parser.parse_args()

    corpus = sentences(SST2)
    texts = corpus[:1000]
    levels = [int(c) for c in args.concurrency.split(",")]
    one = {"one at a time (--max-batch 1)": ["--max-batch", "1"]}
    if args.endpoint == "generate":
        low, high = (int(n) for n in args.new_tokens.split(","))
        bodies = generation_bodies(texts, args.prompt_words, (low, high))
        modes = {"continuous batching": args.batched_flags.split(),
                 "whole batch (--no-continuous)": ["--no-continuous", *args.batched_flags.split()], **one}
    else:
        bodies = [json.dumps({"texts": texts[i : i + args.texts]}).encode() for i in range(0, len(texts), args.texts)]
        modes = {"dynamic batching": args.batched_flags.split(), **one}
    build = build_generator if args.endpoint == "generate" else build_checkpoint
    load_before = load_average()
    with tempfile.TemporaryDirectory() as directory:
        model = os.path.join(directory, args.endpoint)
        shape = build(model, corpus, args.layers, args.hidden, args.vocab)
        servers = {name: Server(model, args.threads, flags, args.endpoint) for name, flags in modes.items()}
        try:
            for server in servers.values():  # warm-up, untimed
                load(server, bodies, 4, 32, 30)
            results = {(c, name): [] for c in levels for name in modes}
            monitor = OthersMonitor([server.process.pid for server in servers.values()])
            monitor.start()
            for concurrency in levels:
                for round_ in range(args.rounds):
                    order = list(modes) if round_ % 2 == 0 else list(reversed(modes))
                    for name in order:
                        results[concurrency, name].append(
                            load(servers[name], bodies, concurrency, args.requests, args.seconds))
            others = monitor.others()
        finally:
            for server in servers.values():
                server.stop()
    rows = []
    for (concurrency, name), runs in results.items():
        latencies = [x for r in runs for x in r["latencies"]]
        wall = sum(r["wall"] for r in runs)
        passes = sum(r["passes"] for r in runs)
        rows.append({"concurrency": concurrency, "mode": name, "requests": len(latencies),
                     "errors": sum(len(r["errors"]) for r in runs), "seconds": round(wall, 2),
                     "requests_per_s": round(len(latencies) / wall, 1),
                     "texts_per_s": round(len(latencies) * args.texts / wall, 1),
                     "tokens_per_s": round(sum(r["tokens"] for r in runs) / wall, 1),
                     "p50_ms": round(1000 * percentile(latencies, 50), 1),
                     "p99_ms": round(1000 * percentile(latencies, 99), 1),
                     "texts_per_pass": round(sum(r["texts_in_passes"] for r in runs) / passes, 2) if passes else None})
    report = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "cpu": cpu_model(), "cores": os.cpu_count(), "load_average_before": load_before,
              "load_average_after": load_average(),
              "other_processes_cpu_share": None if others is None else round(others, 3),
              "model": {"family": "gpt2", "task": "greedy generation (random init)", **shape}
              if args.endpoint == "generate" else {"family": "bert", "task": "classification (random init)", **shape},
              "settings": vars(args), "rows": rows}
    per = "rows/step" if args.endpoint == "generate" else "texts/pass"
    print(f"| concurrency | mode | requests | req/s | texts/s | tokens/s | p50 ms | p99 ms | {per} | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['concurrency']} | {r['mode']} | {r['requests']} | {r['requests_per_s']} | {r['texts_per_s']} | "
              f"{r['tokens_per_s']} | {r['p50_ms']} | {r['p99_ms']} | {r['texts_per_pass']} | {r['errors']} |")
    print(json.dumps(report, indent=1))
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=1)


if __name__ == "__main__":
    main()
