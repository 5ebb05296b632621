"""The HTTP API of ``ptmzoo serve``: FastAPI endpoints over ``ptmzoo.predictions`` and the batcher.

``POST /v1/<endpoint>`` answers ``{"results": [...]}`` (one record per text; the same object
``Model.predict`` returns); ``"stream": true`` on ``/v1/generate`` answers server-sent events, one
``data: {"index", "text"}`` per piece of text, then ``event: done`` with the results. ``GET
/health``, ``GET /metrics`` (Prometheus text), ``GET /v1/model`` (family, task, labels, limits,
the endpoints served and why the others are not). Every error is a JSON object
``{"error": {"code", "message"}}`` with a 4xx status (504 for a request past ``--timeout-s``).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, StreamingResponse
from starlette.exceptions import HTTPException

from ..errors import UserError
from ..predictions import ENDPOINTS, Limits, Predictor, RequestError, answer
from .batching import Batcher
from .metrics import CONTENT_TYPE, Metrics
from .options import ServeConfig

KNOWN_PATHS = {"/health": "health", "/metrics": "metrics", "/v1/model": "model"}


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


async def read_json(request: Request, limit: int):
    """The body as JSON, at most ``limit`` bytes, or a ``RequestError``."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > limit):
        raise RequestError(f"the request body is over the limit of {limit} bytes (--max-body-kb)", 413,
                           "body_too_large") if declared.isdigit() else RequestError(
            "the Content-Length header is not a number", 400, "bad_header")
    body, size = bytearray(), 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"the request body is over the limit of {limit} bytes (--max-body-kb)", 413,
                               "body_too_large")
        body += chunk
    if not body.strip():
        raise RequestError("the request has no body; send a JSON object", 400, "malformed_json")
    try:
        return json.loads(bytes(body))
    except UnicodeDecodeError:
        raise RequestError("the request body is not UTF-8 text", 400, "malformed_json") from None
    except json.JSONDecodeError as exc:
        raise RequestError(f"the request body is not valid JSON ({exc.msg} at line {exc.lineno} column "
                           f"{exc.colno})", 400, "malformed_json") from None


def sse(data, event: str | None = None) -> str:
    return (f"event: {event}\n" if event else "") + f"data: {json.dumps(data, ensure_ascii=False)}\n\n"


def create_app(predictor: Predictor, config: ServeConfig) -> FastAPI:
    metrics = Metrics()
    limit = config.max_body_kb * 1024
    holder: dict[str, Batcher] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        holder["batcher"] = batcher = Batcher(predictor, metrics, config.max_batch, config.max_wait_ms,
                                                    config.continuous)
        batcher.start()
        print(f"ptmzoo serve: {predictor.pretrained.path} at http://{config.host}:{config.port} "
              f"({', '.join('/v1/' + e for e in predictor.endpoints)})", file=sys.stderr, flush=True)
        yield
        await batcher.stop()

    app = FastAPI(title="ptmzoo", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def count(request: Request, call_next):
        start = time.perf_counter()
        metrics.in_flight += 1
        try:
            response = await call_next(request)
        finally:
            metrics.in_flight -= 1
        path = request.url.path
        endpoint = path[4:] if path[4:] in ENDPOINTS else KNOWN_PATHS.get(path, "other")  # few label values
        if endpoint != "metrics":
            metrics.request(endpoint, response.status_code, time.perf_counter() - start)
        return response

    @app.exception_handler(RequestError)
    async def request_error(request: Request, exc: RequestError):
        return error(exc.status, exc.code, str(exc))

    @app.exception_handler(UserError)
    async def user_error(request: Request, exc: UserError):  # found while computing (the model's limits)
        return error(422, "invalid_request", str(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        if exc.status_code == 404:
            return error(404, "unknown_path", f"no endpoint {request.url.path} (GET /health, /metrics, /v1/model; "
                                              f"POST {', '.join('/v1/' + e for e in ENDPOINTS)})")
        if exc.status_code == 405:
            return error(405, "method_not_allowed", f"{request.method} is not allowed on {request.url.path}")
        return error(exc.status_code, "http_error", str(exc.detail))

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):  # a bug: say so, keep serving
        print(f"ptmzoo serve: internal error on {request.url.path}: {type(exc).__name__}: {exc}", file=sys.stderr,
              flush=True)
        return error(500, "internal_error", f"{type(exc).__name__}: {exc}")

    @app.get("/health")
    async def health():
        return {"status": "ok", "endpoints": predictor.endpoints}

    @app.get("/metrics")
    async def metrics_text():
        return PlainTextResponse(metrics.exposition(), media_type=CONTENT_TYPE)

    @app.get("/v1/model")
    async def model():
        return {**predictor.describe(), "max_batch": config.max_batch, "max_wait_ms": config.max_wait_ms,
                "max_body_kb": config.max_body_kb, "timeout_s": config.timeout_s}

    @app.post("/v1/{endpoint}")
    async def predict(endpoint: str, request: Request):
        predictor.check_endpoint(endpoint)
        body = await read_json(request, limit)
        parsed = predictor.parse(endpoint, body)
        if endpoint == "generate" and body.get("stream") is True:
            return StreamingResponse(stream(parsed), media_type="text/event-stream",
                                     headers={"Cache-Control": "no-cache"})
        try:
            records = await asyncio.wait_for(holder["batcher"].submit(parsed), config.timeout_s)
        except TimeoutError:
            raise RequestError(f"no result within {config.timeout_s:g} s (--timeout-s)", 504, "timeout") from None
        return answer(records)

    async def stream(parsed):
        loop, queue = asyncio.get_running_loop(), asyncio.Queue()

        def on_text(index: int, piece: str) -> None:  # in the model's thread
            loop.call_soon_threadsafe(queue.put_nowait, (index, piece))

        job = asyncio.ensure_future(holder["batcher"].submit(parsed, on_text))
        job.add_done_callback(lambda _: queue.put_nowait(None))
        deadline = time.monotonic() + config.timeout_s
        try:
            while True:
                try:
                    entry = await asyncio.wait_for(queue.get(), max(0.0, deadline - time.monotonic()))
                except TimeoutError:
                    yield sse({"code": "timeout", "message": f"no result within {config.timeout_s:g} s"}, "error")
                    return
                if entry is not None:
                    if entry[1]:
                        yield sse({"index": entry[0], "text": entry[1]})
                    continue
                if job.exception() is not None:
                    exc = job.exception()
                    yield sse({"code": getattr(exc, "code", "error"), "message": str(exc)}, "error")
                else:
                    yield sse(answer(job.result()), "done")
                return
        finally:  # timed out, or the client went away: its rows leave the running batch
            job.cancel()

    return app


def serve(model: str, config: ServeConfig) -> None:
    """Load ``model`` and answer requests until SIGTERM or Ctrl-C (requests in flight finish)."""
    import uvicorn

    from ..loading import load

    pretrained = load(model, config.device)
    predictor = Predictor(pretrained, Limits(config.max_texts, config.max_chars, config.max_new_tokens),
                          batch_size=config.max_batch)
    server = uvicorn.Server(uvicorn.Config(create_app(predictor, config), host=config.host, port=config.port,
                                           log_level="warning", access_log=False, lifespan="on",
                                           timeout_graceful_shutdown=int(max(1, config.timeout_s))))
    # uvicorn shuts down gracefully on SIGTERM / SIGINT, then raises the signal again under the
    # handlers it found: these make that a normal exit (status 0)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: None)
    try:
        server.run()
    except SystemExit:
        server.started = False
    if not server.started:
        raise UserError(f"the server could not start on {config.host}:{config.port} (is the port in use?)")
    print("ptmzoo serve: stopped", file=sys.stderr, flush=True)
