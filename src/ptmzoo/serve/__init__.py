"""``ptmzoo serve``: a checkpoint behind an HTTP API (FastAPI on uvicorn).

* ``options``: the server's settings (``ServeConfig``, the flags of ``ptmzoo serve``);
* ``batching``: dynamic batching -- concurrent requests merged into one forward pass;
* ``metrics``: the Prometheus text of ``GET /metrics``;
* ``app``: the endpoints (``create_app``) and ``serve``, which runs it.

The predictions themselves are ``ptmzoo.predictions`` (the same as ``Model.predict``).
"""
