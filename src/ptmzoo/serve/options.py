"""The settings of ``ptmzoo serve`` (each field is a flag)."""

from __future__ import annotations

from dataclasses import dataclass

from ..config import Config, setting
from ..errors import UserError


@dataclass
class ServeConfig(Config):
    host: str = setting("127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    port: int = setting(8000, help="port to listen on")
    max_batch: int = setting(32, help="texts per forward pass: concurrent requests are merged up to this many, "
                                      "and rows of the running generation batch (1: one request at a time)")
    continuous: bool = setting(True, help="generate requests join the running batch between decoding steps "
                                          "(decoders with a KV cache; --no-continuous: requests that arrive "
                                          "together decode as one batch from first to last step)")
    max_wait_ms: float = setting(5.0, help="how long the first request of a batch waits for others to join")
    max_chars: int = setting(2000, help="longest text a request may send, in characters")
    max_texts: int = setting(64, help="most texts (prompts, questions) in one request")
    max_new_tokens: int = setting(256, help="most tokens a generate request may ask for")
    max_body_kb: int = setting(1024, help="largest request body, in KiB")
    timeout_s: float = setting(60.0, help="a request still waiting for its result after this many seconds gets "
                                          "504; also how long a shutdown waits for requests in flight")
    device: str = setting("cpu", help="where the model runs (cpu, cuda, cuda:1)")

    def validate(self) -> None:
        super().validate()
        for name in ("max_batch", "max_chars", "max_texts", "max_new_tokens", "max_body_kb"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        if self.max_wait_ms < 0 or self.timeout_s <= 0:
            raise UserError("--max-wait-ms must be >= 0 and --timeout-s > 0")
        if not 0 <= self.port < 65536:
            raise UserError(f"--port {self.port} is not a port number (0..65535)")
