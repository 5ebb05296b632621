"""Predictions as JSON records: one place for ``Model.predict`` (what ``ptmzoo.load`` returns),
the endpoints of ``ptmzoo serve`` and ``ptmzoo predict`` (through the tasks' ``records``).

A request names an endpoint and gives a body, the JSON object the server receives:

* ``classify`` (classification, regression, multi-label): ``{"texts": [...], "pairs": [...]}``;
* ``tag``: ``{"texts": [...]}``;
* ``qa``: ``{"questions": [...], "contexts": [...]}``;
* ``embed``: ``{"texts": [...], "pooling": "mean"|"cls"|"max"|"last", "normalize": false}``;
* ``fill-mask``: ``{"texts": [...], "top_k": 5}`` (each text with the tokenizer's mask token);
* ``generate``: ``{"prompts": [...], "max_new_tokens": 50, "temperature", "top_k", "top_p",
  "repetition_penalty", "num_beams", "stop", "seed"}`` (the options of ``ptmzoo generate``).

``Predictor.parse`` checks a body and splits it into items (one per text) and options (the same
for the whole request); ``Predictor.run`` computes the records of any number of items with the same
options in one forward pass (the server merges the items of concurrent requests); ``predict`` is
the two in a row. The endpoints a checkpoint can serve are found by running each once on a probe
input: what fails there is switched off with the reason.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from .catalog import family
from .catalog import generate as generate_with
from .checkpoint import Pretrained
from .data.derived import add_derived_inputs
from .errors import BadInput, UserError
from .generation.continuous import (
    ContinuousBatch,
    batches_continuously,
    supports_continuous,
)
from .generation.decoding import Generation, GenerationOptions
from .models.model import unwrap
from .tasks import task_of
from .tasks.base import in_input_order, length_batches, pad
from .tasks.classification import pool_states

# endpoint -> the body's list field whose entries are the items (the positional list of ``predict``)
ENDPOINTS: dict[str, str] = {"classify": "texts", "tag": "texts", "qa": "questions", "embed": "texts",
                             "fill-mask": "texts", "generate": "prompts"}
POOLINGS = ("mean", "cls", "max", "last")


class RequestError(BadInput):
    """A request the server answers with ``status`` and a JSON error naming the problem."""

    def __init__(self, message: str, status: int = 422, code: str = "invalid_request"):
        super().__init__(message)
        self.status, self.code = status, code


@dataclass
class Limits:
    """What one request may ask for (None: no limit; ``Model.predict`` has none)."""

    max_texts: int | None = None
    max_chars: int | None = None
    max_new_tokens: int | None = None


@dataclass
class Request:
    endpoint: str
    items: list[dict]
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        """Requests with the same key can share a forward pass."""
        return self.endpoint + json.dumps(self.options, sort_keys=True)

    @property
    def chars(self) -> int:
        return max(sum(len(v) for v in item.values() if isinstance(v, str)) for item in self.items)


@dataclass
class Outcome:
    """The records of a ``run`` and the tokens it processed (input tokens; generate: new tokens)."""

    records: list[dict]
    tokens: int


# ---- checking bodies ----------------------------------------------------------------------------
def _strings(body: dict, name: str, limits: Limits, required: bool = True) -> list[str] | None:
    if name not in body:
        if required:
            raise RequestError(f'the request needs "{name}": a list of strings', code="missing_field")
        return None
    value = body[name]
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list):
        raise RequestError(f'"{name}" must be a list of strings (or one string), not {_kind(value)}',
                           code="wrong_type")
    wrong = next((i for i, v in enumerate(value) if not isinstance(v, str)), None)
    if wrong is not None:
        raise RequestError(f'"{name}"[{wrong}] must be a string, not {_kind(value[wrong])}', code="wrong_type")
    if not value:
        raise RequestError(f'"{name}" is empty; give at least one string', code="empty_input")
    for number, text in enumerate(value):
        if not text.strip():
            raise RequestError(f'"{name}"[{number}] is empty', code="empty_input")
        if limits.max_chars is not None and len(text) > limits.max_chars:
            raise RequestError(f'"{name}"[{number}] has {len(text)} characters, more than the limit of '
                               f"{limits.max_chars} (--max-chars)", status=413, code="text_too_long")
    if limits.max_texts is not None and len(value) > limits.max_texts:
        raise RequestError(f'"{name}" has {len(value)} entries, more than the limit of {limits.max_texts} per '
                           "request (--max-texts)", status=413, code="too_many_texts")
    return value


def _kind(value) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number")


def _option(body: dict, name: str, kind: type | tuple, default=None, check: Callable[[Any], bool] | None = None,
            rule: str = ""):
    if name not in body or body[name] is None:
        return default
    value = body[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool) and bool not in kinds or not isinstance(value, kinds):
        names = " or ".join(k.__name__.replace("str", "string").replace("int", "integer").replace("float", "number")
                            for k in kinds)
        raise RequestError(f'"{name}" must be {names}, not {_kind(value)}', code="wrong_type")
    if isinstance(value, float) and not math.isfinite(value):
        raise RequestError(f'"{name}" must be a finite number', code="wrong_type")
    if check is not None and not check(value):
        raise RequestError(f'"{name}" {rule} (got {value!r})', code="invalid_value")
    return value


def _same_length(first: list, second: list, names: tuple[str, str]) -> None:
    if len(first) != len(second):
        raise RequestError(f'"{names[1]}" has {len(second)} entries and "{names[0]}" {len(first)}; give one each',
                           code="length_mismatch")


def answer(records: list[dict]) -> dict[str, list[dict]]:
    """The body of an endpoint's answer (and what ``Model.predict`` returns): ``{"results": records}``."""
    return {"results": records}


# ---- the predictor ------------------------------------------------------------------------------
class Predictor:
    """The predictions a loaded checkpoint can make, as JSON records."""

    def __init__(self, pretrained: Pretrained, limits: Limits | None = None, batch_size: int = 32):
        if pretrained.tokenizer is None:
            raise UserError(f"{pretrained.path} has no tokenizer files; predictions from text need them")
        self.pretrained, self.limits, self.batch_size = pretrained, limits or Limits(), batch_size
        self.model, self.tokenizer = pretrained.model, pretrained.tokenizer
        self.task = task_of(pretrained) if pretrained.task else None
        self.task_endpoint = self.task.endpoint if self.task is not None else None
        self.fill_head = next((name for name, head in unwrap(self.model).heads.items() if head.fills_masks), None)
        self.reasons: dict[str, str] = {}  # endpoint -> why this checkpoint cannot serve it
        self.probe()

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def endpoints(self) -> list[str]:
        return [name for name in ENDPOINTS if name not in self.reasons]

    @property
    def max_length(self) -> int | None:
        return unwrap(self.model).backbone.max_length

    # ---- which endpoints ----------------------------------------------------------------------
    def probe(self) -> None:
        """Switch off what the checkpoint cannot do, with the reason: task endpoints of other
        tasks, and every endpoint that fails on a probe input."""
        task = self.pretrained.task["name"] if self.task is not None else None
        mask = self.tokenizer.roles.get("mask")
        probes = {"classify": {"texts": ["hello"]}, "tag": {"texts": ["hello"]},
                  "qa": {"questions": ["hello?"], "contexts": ["hello"]}, "embed": {"texts": ["hello"]},
                  "fill-mask": {"texts": [f"hello {mask}"]}, "generate": {"prompts": ["hello"], "max_new_tokens": 1}}
        if self.task_endpoint == "classify" and self.task.options.text_pair_column is not None:
            probes["classify"]["pairs"] = ["hello"]  # a sentence-pair classifier
        for endpoint, body in probes.items():
            if endpoint in ("classify", "tag", "qa") and endpoint != self.task_endpoint:
                self.reasons[endpoint] = (f"the checkpoint is not fine-tuned for it (its task: {task})" if task else
                                          "the checkpoint is not a fine-tuned task model (ptmzoo finetune)")
            elif endpoint == "fill-mask" and (self.fill_head is None or mask is None):
                self.reasons[endpoint] = ("the model has no masked-LM head" if self.fill_head is None else
                                          "the tokenizer has no mask token")
            elif endpoint == "generate" and family(unwrap(self.model).family).generate is None:
                self.reasons[endpoint] = f"a {unwrap(self.model).family} model cannot generate text"
            else:
                try:
                    self.run(self.parse(endpoint, body, probing=True))
                except Exception as exc:  # noqa: BLE001 -- whatever fails on the probe is not served
                    self.reasons[endpoint] = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__

    def check_endpoint(self, endpoint: str) -> None:
        if endpoint not in ENDPOINTS:
            raise RequestError(f"unknown endpoint /v1/{endpoint} (endpoints: {', '.join(ENDPOINTS)})", 404,
                               "unknown_endpoint")
        if endpoint in self.reasons:
            raise RequestError(f"this checkpoint cannot serve /v1/{endpoint}: {self.reasons[endpoint]}; it serves "
                               f"{', '.join('/v1/' + e for e in self.endpoints) or 'nothing'}", 404, "not_served")

    def describe(self) -> dict[str, Any]:
        """What ``GET /v1/model`` answers."""
        task = self.pretrained.task
        return {"path": self.pretrained.path, "family": unwrap(self.model).family,
                "task": task["name"] if task else None, "labels": self.task.labels if self.task else None,
                "endpoints": self.endpoints, "not_served": dict(self.reasons),
                "mask_token": self.tokenizer.roles.get("mask") if "fill-mask" in self.endpoints else None,
                "limits": {"max_texts": self.limits.max_texts, "max_chars": self.limits.max_chars,
                           "max_new_tokens": self.limits.max_new_tokens, "max_length_tokens": self.max_length}}

    # ---- requests -------------------------------------------------------------------------------
    def parse(self, endpoint: str, body: Any, probing: bool = False) -> Request:
        """The items and options of a request body, or a ``RequestError`` naming what is wrong."""
        if not probing:
            self.check_endpoint(endpoint)
        if not isinstance(body, dict):
            raise RequestError(f"the request body must be a JSON object, not {_kind(body)}", code="wrong_type")
        main = ENDPOINTS[endpoint]
        known = {main, *self._option_names(endpoint)}
        unknown = sorted(set(body) - known)
        if unknown:
            raise RequestError(f'unknown field "{unknown[0]}" for /v1/{endpoint} (fields: {", ".join(sorted(known))})',
                               code="unknown_field")
        texts = _strings(body, main, self.limits)
        if endpoint == "classify":
            pairs = _strings(body, "pairs", self.limits, required=False)
            if pairs is not None:
                _same_length(texts, pairs, ("texts", "pairs"))
            items = [{"text": t, **({"pair": p} if pairs else {})} for t, p in zip(texts, pairs or texts)]
            return Request(endpoint, items)
        if endpoint == "qa":
            contexts = _strings(body, "contexts", self.limits)
            if len(contexts) == 1 and len(texts) > 1:
                contexts = contexts * len(texts)  # several questions about one context
            _same_length(texts, contexts, ("questions", "contexts"))
            return Request(endpoint, [{"question": q, "context": c} for q, c in zip(texts, contexts)])
        items = [{"text": t} for t in texts]
        if endpoint == "embed":
            options = {"pooling": _option(body, "pooling", str, "mean", lambda v: v in POOLINGS,
                                          f"must be one of {', '.join(POOLINGS)}"),
                       "normalize": _option(body, "normalize", bool, False)}
            return Request(endpoint, items, options)
        if endpoint == "fill-mask":
            mask = self.tokenizer.roles.get("mask")
            for number, text in enumerate(texts):
                if mask not in text:
                    raise RequestError(f'"texts"[{number}] has no mask token {mask}', code="no_mask")
            return Request(endpoint, items, {"top_k": _option(body, "top_k", int, 5, lambda v: 1 <= v <= 100,
                                                              "must be between 1 and 100")})
        if endpoint == "generate":
            return Request(endpoint, items, self._generation_options(body))
        return Request(endpoint, items)

    @staticmethod
    def _option_names(endpoint: str) -> tuple[str, ...]:
        return {"classify": ("pairs",), "qa": ("contexts",), "embed": ("pooling", "normalize"),
                "fill-mask": ("top_k",),
                "generate": ("max_new_tokens", "temperature", "top_k", "top_p", "repetition_penalty", "num_beams",
                             "stop", "seed", "stream")}.get(endpoint, ())

    def _generation_options(self, body: dict) -> dict[str, Any]:
        limit = self.limits.max_new_tokens
        number = (int, float)
        options = {
            "max_new_tokens": _option(body, "max_new_tokens", int, min(50, limit or 50),
                                      lambda v: 1 <= v <= (limit or v),
                                      f"must be between 1 and {limit} (--max-new-tokens)" if limit else "must be >= 1"),
            "temperature": _option(body, "temperature", number, None, lambda v: v >= 0, "must be >= 0"),
            "top_k": _option(body, "top_k", int, None, lambda v: v >= 0, "must be >= 0"),
            "top_p": _option(body, "top_p", number, None, lambda v: 0 < v <= 1, "must be in (0, 1]"),
            "repetition_penalty": _option(body, "repetition_penalty", number, 1.0, lambda v: v > 0, "must be > 0"),
            "num_beams": _option(body, "num_beams", int, 1, lambda v: 1 <= v <= 8, "must be between 1 and 8"),
            "seed": _option(body, "seed", int, None),
        }
        stop = body.get("stop", [])
        if isinstance(stop, str):
            stop = [stop]
        if not isinstance(stop, list) or not all(isinstance(s, str) and s for s in stop):
            raise RequestError('"stop" must be a list of non-empty strings', code="wrong_type")
        options["stop"] = stop
        _option(body, "stream", bool, False)
        return options

    # ---- computing -------------------------------------------------------------------------------
    def run(self, request: Request, on_text: Callable[[int, str], None] | None = None) -> Outcome:
        """The records of every item of ``request`` (any number: the server merges requests),
        in batches of ``batch_size``. ``on_text(item, piece)``: generated text as it comes."""
        with torch.inference_mode():
            if request.endpoint in ("classify", "tag", "qa"):
                return self._task(request)
            return {"embed": self._embed, "fill-mask": self._fill_mask,
                    "generate": lambda r: self._generate(r, on_text)}[request.endpoint](request)

    def _task(self, request: Request) -> Outcome:
        task = self.task
        rows = task.request_rows(request.items)
        samples = task.encode(rows, "the request", with_labels=False)
        outputs = task.predict(self.model, samples, self.batch_size, self.device)
        return Outcome(task.records(rows, samples, outputs), sum(len(s["input_ids"]) for s in samples))

    def _per_text(self, request: Request, of_batch: Callable[[list[list[int]], dict], list[dict]]) -> Outcome:
        """The records of the request's texts encoded with the tokenizer's template, in batches
        of similar length (``length_batches``): ``of_batch(ids, inputs on the device)`` gives a batch's."""
        ids = self.tokenizer.encode_batch([item["text"] for item in request.items], max_length=self.max_length)
        backbone = unwrap(self.model).backbone
        pad_id = self.tokenizer.pad_id if self.tokenizer.pad_id is not None else 0

        def records_of(indices: list[int]) -> list[dict]:
            chunk = [ids[i] for i in indices]
            batch = {"input_ids": pad(chunk, pad_id), "attention_mask": pad([[1] * len(i) for i in chunk], 0)}
            batch = add_derived_inputs(batch, backbone.derived_inputs, self.tokenizer, as_tensors=True)
            return of_batch(chunk, {k: v.to(self.device) for k, v in unwrap(self.model).select_inputs(batch).items()})

        batches = length_batches(list(map(len, ids)), self.batch_size)
        return Outcome(in_input_order(len(ids), ((b, records_of(b)) for b in batches)), sum(map(len, ids)))

    def _embed(self, request: Request) -> Outcome:
        def vectors(chunk: list[list[int]], inputs: dict) -> list[dict]:
            hidden = self.model(**inputs).last_hidden_state.float()
            pooled = pool_states(hidden, inputs.get("attention_mask"), request.options["pooling"])
            if request.options["normalize"]:
                pooled = torch.nn.functional.normalize(pooled, dim=-1)
            return [{"embedding": v.tolist(), "tokens": len(i)} for v, i in zip(pooled.cpu(), chunk)]

        return self._per_text(request, vectors)

    def _fill_mask(self, request: Request) -> Outcome:
        mask_id, top_k = self.tokenizer.mask_id, request.options["top_k"]

        def candidates(chunk: list[list[int]], inputs: dict) -> list[dict]:
            logits, records = self.model(**inputs).head_logits[self.fill_head].float(), []
            for row, ids in enumerate(chunk):
                masks = []
                for position in [p for p, i in enumerate(ids) if i == mask_id]:
                    probabilities = torch.softmax(logits[row, position], dim=-1)
                    best = torch.topk(probabilities, min(top_k, probabilities.numel()))
                    masks.append({"position": position, "candidates": [
                        {"token": self.tokenizer.backend.id_to_token(int(i)), "id": int(i), "score": float(p)}
                        for p, i in zip(best.values.cpu(), best.indices.cpu())]})
                if not masks:
                    raise RequestError("a mask token was cut off: the text is longer than the model's "
                                       f"{self.max_length} tokens", code="text_too_long")
                records.append({"masks": masks})
            return records

        return self._per_text(request, candidates)

    def _generate(self, request: Request, on_text: Callable[[int, str], None] | None) -> Outcome:
        prompts = [item["text"] for item in request.items]
        streams = on_text is not None and family(unwrap(self.model).family).streams_text
        extra = {"on_text": on_text} if streams else {}
        outcome = self.generation_outcome(generate_with(self.pretrained, prompts, **request.options, **extra))
        if on_text is not None and not streams:  # a model that cannot stream: all of each text at the end
            for index, record in enumerate(outcome.records):
                on_text(index, record["text"])
        return outcome

    @staticmethod
    def generation_outcome(result: Generation) -> Outcome:
        """The records of a ``Generation`` (text, finish reason, new tokens of each prompt)."""
        records = [{"text": text, "finish_reason": reason, "tokens": len(ids)}
                   for text, reason, ids in zip(result.texts, result.finish_reasons, result.token_ids)]
        return Outcome(records, sum(r["tokens"] for r in records))

    # ---- continuous batching (the server) -----------------------------------------------------------
    def continuous_batch(self, rows: int = 1) -> ContinuousBatch | None:
        """A running batch of mostly ``rows`` rows for generate requests, when the checkpoint's
        decoder has a KV cache (None: generation runs whole-batch, ``run``)."""
        model = unwrap(self.model)
        if "generate" in self.reasons or not family(model.family).streams_text or not supports_continuous(model):
            return None
        return ContinuousBatch(model, self.tokenizer, rows)

    @staticmethod
    def joins_continuously(request: Request) -> bool:
        """Whether a (parsed) generate request decodes in the running batch (not beam search)."""
        return request.endpoint == "generate" and batches_continuously(GenerationOptions(**request.options))

    # ---- the Python API ----------------------------------------------------------------------------
    def predict(self, inputs, endpoint: str | None = None, **fields) -> dict[str, list[dict]]:
        endpoint = endpoint or self.default_endpoint()
        if endpoint not in ENDPOINTS:
            self.check_endpoint(endpoint)
        return answer(self.run(self.parse(endpoint, {ENDPOINTS[endpoint]: inputs, **fields})).records)

    def default_endpoint(self) -> str:
        """The task's endpoint; else generate, fill-mask or embed, the first the model serves."""
        for endpoint in (self.task_endpoint, "generate", "fill-mask", "embed"):
            if endpoint in self.endpoints:
                return endpoint
        raise BadInput(f"{self.pretrained.path} serves no prediction ({'; '.join(self.reasons.values())})")


class Model(Pretrained):
    """What ``ptmzoo.load`` returns: ``.model``, ``.tokenizer``, and ``predict``."""

    _predictor: Predictor | None = None

    @classmethod
    def of(cls, pretrained: Pretrained) -> Model:
        return pretrained if isinstance(pretrained, cls) else cls(pretrained.model, pretrained.tokenizer,
                                                                   pretrained.meta, pretrained.path)

    def predictor(self) -> Predictor:
        if self._predictor is None:
            self._predictor = Predictor(self)
        return self._predictor

    def predict(self, inputs, endpoint: str | None = None, **fields) -> dict[str, list[dict]]:
        """What the endpoint answers, ``{"results": [one record per input]}``, for ``inputs`` -- the texts (qa:
        the questions, with ``contexts=[...]``; generate: the prompts) -- and the other fields of
        its request body as keywords (``pairs``, ``pooling``, ``top_k``, ``max_new_tokens``, ...).
        ``endpoint``: classify, tag, qa, embed, fill-mask or generate (default: the checkpoint's
        task, else generate, fill-mask or embed).

            >>> clf = ptmzoo.load("runs/sst2/best")
            >>> clf.predict(["a fine film"])["results"][0]["label"]  # also "score" and every label's "scores"
        """
        return self.predictor().predict(inputs, endpoint, **fields)

    def endpoints(self) -> list[str]:
        return self.predictor().endpoints


__all__ = ["ENDPOINTS", "Limits", "Model", "Outcome", "Predictor", "Request", "RequestError", "answer"]
