"""The server's counters and histograms in the Prometheus text exposition format (version 0.0.4),
written here: a handful of series need no client library.

* ``ptmzoo_requests_total{endpoint, status}``: requests answered;
* ``ptmzoo_request_seconds{endpoint}``: a histogram of the time from arrival to answer;
* ``ptmzoo_batch_size{endpoint}``: a histogram of the texts in each forward pass (> 1: requests
  were merged); for generation batched continuously, of the rows of each decoding step;
* ``ptmzoo_tokens_total{endpoint}`` and ``ptmzoo_tokens_per_second{endpoint}``: tokens processed
  (input tokens; generate: new tokens), per second of forward passes;
* ``ptmzoo_in_flight``: requests being answered now;
* continuous batching of generation: ``ptmzoo_generation_joins_total{batch}`` (requests that
  joined the running batch, ``batch="running"`` while other rows were decoding, ``"empty"``
  otherwise), ``ptmzoo_generation_rows`` (rows decoding now) and
  ``ptmzoo_generation_compactions_total`` (the KV cache compacted to make room).
"""

from __future__ import annotations

import threading
from collections import defaultdict

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Histogram:
    def __init__(self, buckets: tuple[float, ...]):
        self.buckets = buckets
        self.counts = [0] * len(buckets)
        self.count, self.sum = 0, 0.0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(self.buckets):
            if value <= bound:
                self.counts[i] += 1
        self.count += 1
        self.sum += value

    def lines(self, name: str, labels: str) -> list[str]:
        sep = "," if labels else ""
        out = [f'{name}_bucket{{{labels}{sep}le="{_number(b)}"}} {c}' for b, c in zip(self.buckets, self.counts)]
        out.append(f'{name}_bucket{{{labels}{sep}le="+Inf"}} {self.count}')
        braces = f"{{{labels}}}" if labels else ""
        return [*out, f"{name}_sum{braces} {_number(self.sum)}", f"{name}_count{braces} {self.count}"]


def _number(value: float) -> str:
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class Metrics:
    """Thread-safe: requests are counted on the event loop, batches in the model's thread."""

    def __init__(self):
        self.lock = threading.Lock()
        self.requests: dict[tuple[str, int], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = {}
        self.batches: dict[str, Histogram] = {}
        self.tokens: dict[str, int] = defaultdict(int)
        self.busy: dict[str, float] = defaultdict(float)
        self.in_flight = 0
        self.joins = {"empty": 0, "running": 0}
        self.rows = self.compactions = 0

    def request(self, endpoint: str, status: int, seconds: float) -> None:
        with self.lock:
            self.requests[(endpoint, status)] += 1
            self.latency.setdefault(endpoint, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def batch(self, endpoint: str, size: int, tokens: int, seconds: float) -> None:
        with self.lock:
            self.batches.setdefault(endpoint, Histogram(BATCH_BUCKETS)).observe(size)
            self.tokens[endpoint] += tokens
            self.busy[endpoint] += seconds

    def join(self, running: bool) -> None:
        with self.lock:
            self.joins["running" if running else "empty"] += 1

    def decoding(self, rows: int, compactions: int) -> None:
        with self.lock:
            self.rows = rows
            self.compactions += compactions

    def exposition(self) -> str:
        with self.lock:
            lines = ["# HELP ptmzoo_requests_total Requests answered, by endpoint and HTTP status.",
                     "# TYPE ptmzoo_requests_total counter"]
            lines += [f'ptmzoo_requests_total{{endpoint="{e}",status="{s}"}} {n}'
                      for (e, s), n in sorted(self.requests.items())]
            lines += ["# HELP ptmzoo_request_seconds Time from a request's arrival to its answer.",
                      "# TYPE ptmzoo_request_seconds histogram"]
            for endpoint, histogram in sorted(self.latency.items()):
                lines += histogram.lines("ptmzoo_request_seconds", f'endpoint="{endpoint}"')
            lines += ["# HELP ptmzoo_batch_size Texts in each forward pass (requests merged by dynamic batching).",
                      "# TYPE ptmzoo_batch_size histogram"]
            for endpoint, histogram in sorted(self.batches.items()):
                lines += histogram.lines("ptmzoo_batch_size", f'endpoint="{endpoint}"')
            lines += ["# HELP ptmzoo_tokens_total Tokens processed (input tokens; generate: new tokens).",
                      "# TYPE ptmzoo_tokens_total counter"]
            lines += [f'ptmzoo_tokens_total{{endpoint="{e}"}} {n}' for e, n in sorted(self.tokens.items())]
            lines += ["# HELP ptmzoo_tokens_per_second Tokens processed per second spent in forward passes.",
                      "# TYPE ptmzoo_tokens_per_second gauge"]
            lines += [f'ptmzoo_tokens_per_second{{endpoint="{e}"}} {_number(n / self.busy[e] if self.busy[e] else 0)}'
                      for e, n in sorted(self.tokens.items())]
            lines += ["# HELP ptmzoo_in_flight Requests being answered now.", "# TYPE ptmzoo_in_flight gauge",
                      f"ptmzoo_in_flight {self.in_flight}"]
            lines += [("# HELP ptmzoo_generation_joins_total Requests that joined the running generation batch "
                       "(running: while other rows were decoding)."), "# TYPE ptmzoo_generation_joins_total counter"]
            lines += [f'ptmzoo_generation_joins_total{{batch="{b}"}} {n}' for b, n in sorted(self.joins.items())]
            lines += ["# HELP ptmzoo_generation_rows Rows of the running generation batch now.",
                      "# TYPE ptmzoo_generation_rows gauge", f"ptmzoo_generation_rows {self.rows}",
                      "# HELP ptmzoo_generation_compactions_total Times the running batch's KV cache was compacted.",
                      "# TYPE ptmzoo_generation_compactions_total counter",
                      f"ptmzoo_generation_compactions_total {self.compactions}"]
        return "\n".join(lines) + "\n"


def parse_exposition(text: str) -> dict[str, float]:
    """``{series with labels: value}`` of an exposition (for tests and the load test)."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            values[name] = float(value)
    return values
