"""Text generation with causal language models: greedy, sampling, beam search.

Layers, from the bottom up:

* logit filters (``repetition_penalty``, ``top_k_filter``, ``top_p_filter``) on [batch, vocab];
* a *stepper*: anything with ``prefill(input_ids, attention_mask)`` and ``step(tokens)`` returning
  next-token logits [batch, vocab], and ``reorder(index)`` for beam search. ``CachedLM`` runs a
  ptmzoo decoder with a static ``KVCache``, ``MemoryLM`` one with a memory (Transformer-XL); tests
  plug in hand-made tables;
* the search loops on token ids: ``sampling_steps`` (greedy and sampling, one step at a time) and
  ``beam_search``;
* ``generate`` / ``stream``: text prompts in (left-padded into one batch), continuations out,
  with stop strings and streaming of text as it comes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from ..errors import UserError
from ..models.base import BackboneOutput
from ..nn.layout import use_decoding_layout
from .cache import KVCache


@dataclass
class GenerationOptions:
    """How to continue a prompt. Sampling is on when ``temperature`` (> 0), ``top_k`` or ``top_p``
    is given, or with ``do_sample=True``; otherwise decoding is greedy (``temperature=0`` too)."""

    max_new_tokens: int = 50
    temperature: float | None = None
    top_k: int | None = None
    top_p: float | None = None
    do_sample: bool | None = None
    repetition_penalty: float = 1.0
    num_beams: int = 1
    length_penalty: float = 1.0  # beams score sum(log p) / new_tokens ** length_penalty
    early_stopping: bool = False  # beam search ends once num_beams hypotheses are finished
    stop: Sequence[str] = ()  # stop strings: the text ends just before the first one
    eos_token_id: int | None = None  # default: the tokenizer's end of document
    ignore_eos: bool = False
    seed: int | None = None
    static_cache: bool = False  # attend over the whole cache each step (fixed shapes, for CUDA graphs)
    compile: bool = False  # torch.compile the one-token step (static cache; CUDA graphs on a GPU)
    constraint: Any = None  # a generation.constrained.TokenTrie: the output is one of its sequences

    def __post_init__(self):
        self.stop = [self.stop] if isinstance(self.stop, str) else list(self.stop)
        checks = [
            (self.max_new_tokens >= 1, "max_new_tokens must be at least 1"),
            (self.temperature is None or self.temperature >= 0, "temperature must be >= 0"),
            (self.top_k is None or self.top_k >= 0, "top_k must be >= 0 (0: no top-k filter)"),
            (self.top_p is None or 0 < self.top_p <= 1, "top_p must be in (0, 1]"),
            (self.repetition_penalty > 0, "repetition_penalty must be > 0 (1: no penalty)"),
            (self.num_beams >= 1, "num_beams must be at least 1"),
            (all(self.stop), "stop strings must not be empty"),
            (not (self.sampling and self.num_beams > 1),
             "beam search does not sample: drop temperature/top_k/top_p or use num_beams=1"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)

    @property
    def sampling(self) -> bool:
        if self.do_sample is not None:
            return self.do_sample
        if self.temperature is not None:
            return self.temperature > 0
        return self.top_k is not None or self.top_p is not None


# ---- logit filters ----------------------------------------------------------------------------
def repetition_penalty(logits: torch.Tensor, seen: torch.Tensor, penalty: float) -> torch.Tensor:
    """CTRL's penalty (Keskar et al., 2019), with the sign rule of ``transformers``: the logits of
    tokens already in the text (``seen``, bool [B, V]) are divided by ``penalty`` when positive
    and multiplied when negative, so both become less likely for a penalty above 1."""
    penalized = torch.where(logits > 0, logits / penalty, logits * penalty)
    return torch.where(seen, penalized, logits)


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` largest logits of each row (ties with the k-th are kept too); -inf elsewhere."""
    if k <= 0 or k >= logits.shape[-1]:
        return logits
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter (Holtzman et al., 2020): keep the most likely tokens whose probabilities
    first reach a total of ``p``; the most likely token always stays."""
    if p >= 1:
        return logits
    ordered, order = logits.sort(dim=-1, descending=True)
    probs = ordered.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # of the tokens more likely than this one
    drop = torch.zeros_like(mass_before, dtype=torch.bool).scatter(-1, order, mass_before >= p)
    return logits.masked_fill(drop, float("-inf"))


def choose_tokens(logits: torch.Tensor, options: GenerationOptions, seen: torch.Tensor | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """The next token of each row: repetition penalty, then argmax, or temperature -> top-k -> top-p
    -> a draw (the order of ``transformers``)."""
    if seen is not None:
        logits = repetition_penalty(logits, seen, options.repetition_penalty)
    if not options.sampling:
        return logits.argmax(dim=-1)
    if options.temperature:
        logits = logits / options.temperature
    logits = top_k_filter(logits, options.top_k or 0)
    logits = top_p_filter(logits, options.top_p if options.top_p is not None else 1.0)
    return torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)[:, 0]


def _seen_tokens(input_ids: torch.Tensor, attention_mask: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """bool [B, V]: which tokens occur in each row's real (unpadded) tokens."""
    seen = torch.zeros(input_ids.shape[0], vocab_size, dtype=torch.bool, device=input_ids.device)
    rows, cols = attention_mask.bool().nonzero(as_tuple=True)
    seen[rows, input_ids[rows, cols]] = True
    return seen


# ---- the model, one step at a time --------------------------------------------------------------
def lm_head(model, purpose: str = "generate text"):
    """The causal LM head of a ``PtmModel``, or a clear error saying what it was wanted for."""
    heads = {name: head for name, head in model.heads.items() if head.kind == "clm"}
    if not model.backbone.supports_cache or not heads:
        have = ", ".join(model.heads) or "none"
        raise UserError(f"this {model.family} model cannot {purpose}: it needs a decoder with a causal LM "
                        f"head (clm), it has heads: {have}; pre-train e.g. --preset gpt2-tiny")
    return next(iter(heads.values()))


def decoding_cache(backbone, batch: int, max_len: int, static: bool = False):
    """What a decoder keeps between steps: a recurrent backbone's state (an LSTM's h and c, from
    ``initial_state``), else a ``KVCache`` of ``max_len`` positions."""
    if backbone.recurrent:
        if static:
            raise UserError("a static cache (--compile) holds keys and values; a recurrent model keeps its "
                            "state instead: drop --compile")
        return backbone.initial_state(batch)
    return KVCache.for_backbone(backbone, batch, max_len, static)


class CachedLM:
    """A ptmzoo decoder run incrementally with a ``KVCache`` (or a recurrent backbone with its
    state): the prompts once, then a token per step.

    Positions count real tokens only, so a left-padded row is positioned as if it had no padding
    (backbones that read positions); a recurrent backbone skips the padding of a row.
    """

    def __init__(self, model, batch: int, max_len: int, static: bool = False, compiled: bool = False):
        self.backbone = model.backbone
        self.head = lm_head(model)
        self.cache = decoding_cache(self.backbone, batch, max_len, static or compiled)
        self.reads_positions = "position_ids" in self.backbone.inputs
        self.next_position: torch.Tensor | None = None  # [B]
        self._one_token = compile_step(self._one_token, self.cache) if compiled else self._one_token

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        self.next_position = positions[:, -1] + 1
        return self._logits(input_ids, attention_mask, positions)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        positions = self.next_position[:, None]
        self.next_position = self.next_position + 1
        return self._one_token(tokens[:, None], positions)

    def _one_token(self, input_ids: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        return self._logits(input_ids, None, positions)

    def reorder(self, index: torch.Tensor) -> None:
        self.cache.reorder(index)
        self.next_position = self.next_position[index]

    def _logits(self, input_ids, attention_mask, positions) -> torch.Tensor:
        extra = {"position_ids": positions} if self.reads_positions else {}
        out = self.backbone(input_ids, attention_mask, cache=self.cache, **extra)
        last = BackboneOutput(out.last_hidden_state[:, -1:])  # the vocabulary projection of one position only
        return self.head.logits(last, {"input_ids": input_ids, "attention_mask": attention_mask})[:, -1].float()


def memory_lm_head(model):
    """The ``xl_lm`` head of a model with a memory, or a clear error."""
    heads = [head for head in model.heads.values() if head.kind == "xl_lm"]
    if "mems" not in model.backbone.inputs or not heads:
        raise UserError(f"this {model.family} model has no memory language-model head (xl_lm; heads: "
                        f"{', '.join(model.heads) or 'none'}); pre-train a Transformer-XL preset (transfo-xl-tiny)")
    return heads[0]


class MemoryLM:
    """A model with a memory (Transformer-XL) run incrementally: the prompts once (left-padded rows:
    the padding is masked and, with relative positions, moves nothing), then each new token alone
    against the memory -- the states that entered each layer for the tokens before it, the last
    ``mem_len`` of them (the model's by default), as in the paper's evaluation. A memory as long as
    the text gives exactly the logits of running the whole text again."""

    def __init__(self, model, mem_len: int | None = None):
        self.backbone = model.backbone
        self.head = memory_lm_head(model)
        self.mem_len = mem_len if mem_len is not None else model.config.mem_len
        self.mems = None
        self.real: torch.Tensor | None = None  # [B, memory length]: which memory slots are real tokens

    def _logits(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        mask = attention_mask if self.real is None else torch.cat([self.real, attention_mask], dim=1)
        out = self.backbone(input_ids, mask, mems=self.mems, mem_len=self.mem_len)
        self.mems = out.mems
        if out.mems is not None:
            self.real = mask[:, mask.shape[1] - out.mems[0].shape[1]:]
        return self.head.logits(BackboneOutput(out.last_hidden_state[:, -1:]), {})[:, -1].float()

    def prefill(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        self.mems, self.real = None, None
        return self._logits(input_ids, attention_mask)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._logits(tokens[:, None], torch.ones_like(tokens)[:, None])

    def reorder(self, index: torch.Tensor) -> None:
        if self.mems is not None:
            self.mems = tuple(m[index] for m in self.mems)
            self.real = self.real[index]


def memory_stepper(model, batch: int, input_ids, options: GenerationOptions):
    """The stepper of models with a memory (``MemoryLM``; None input ids: only the check)."""
    if input_ids is None:
        return memory_lm_head(model)
    if model.config.mem_len == 0:
        raise UserError("this model keeps no memory (model.mem_len=0); it would generate from one token only")
    return MemoryLM(model)


def compile_step(step: Callable, cache: KVCache) -> Callable:
    """``torch.compile`` a one-token decoding step over a static cache: one graph for every step
    (shapes and the write position never change on the host), replayed as a CUDA graph on a GPU.
    The cache buffers keep their addresses, which CUDA graphs need to update them in place."""
    for buffer in cache.buffers():
        torch._dynamo.mark_static_address(buffer)
    mode = "reduce-overhead" if cache.keys.is_cuda else None
    return torch.compile(step, fullgraph=True, dynamic=False, mode=mode)


COMPILED_CACHE_STEP = 128  # compiled caches come in multiples of this many positions


def compiled_lm(model, batch: int, length: int) -> CachedLM:
    """A ``CachedLM`` with a compiled step, kept on the model and reused by later calls with the
    same batch size and a cache of the same size (rounded up), so the step compiles only once."""
    max_len = -(-length // COMPILED_CACHE_STEP) * COMPILED_CACHE_STEP
    if model.backbone.max_length is not None:
        max_len = min(max_len, model.backbone.max_length)
    weight = model.backbone.input_embeddings.weight
    key = (batch, max_len, weight.dtype, weight.device)
    store = model.__dict__.setdefault("_compiled_decoders", {})  # a plain dict, not a submodule
    if key not in store:
        store[key] = CachedLM(model, batch, max_len, compiled=True)
    lm = store[key]
    lm.cache.reset()
    return lm


# ---- search loops on token ids ------------------------------------------------------------------
def sampling_steps(lm, input_ids: torch.Tensor, attention_mask: torch.Tensor, options: GenerationOptions,
                   eos_id: int | None = None, generator: torch.Generator | None = None,
                   should_stop: Callable[[list[int], list[bool]], list[bool]] | None = None,
                   ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Greedy or sampled decoding; yields each step's tokens [B] and which rows were still running.

    A row ends at ``eos_id`` or when ``should_stop(tokens, running)`` says so (stop strings);
    ended rows get ``eos_id`` (or 0) as filler. The loop ends when all rows have ended or after
    ``max_new_tokens`` steps.
    """
    filler = eos_id if eos_id is not None else 0
    logits = lm.prefill(input_ids, attention_mask)
    seen = None
    if options.repetition_penalty != 1.0:
        seen = _seen_tokens(input_ids, attention_mask, logits.shape[-1])
    done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=logits.device)
    rows = torch.arange(input_ids.shape[0], device=logits.device)
    for step in range(options.max_new_tokens):
        running = ~done
        tokens = choose_tokens(logits, options, seen, generator).masked_fill(done, filler)
        if eos_id is not None:
            done |= tokens == eos_id
        if should_stop is not None:
            done |= torch.tensor(should_stop(tokens.tolist(), running.tolist()), device=done.device)
        yield tokens, running
        if step + 1 == options.max_new_tokens or bool(done.all()):
            return
        if seen is not None:
            seen[rows, tokens] = True
        logits = lm.step(tokens)


def beam_search(lm, input_ids: torch.Tensor, attention_mask: torch.Tensor, options: GenerationOptions,
                eos_id: int | None = None) -> list[list[int]]:
    """The best continuation of each prompt by beam search; ``lm`` runs batch x num_beams rows.

    As in ``transformers``: each step keeps the ``num_beams`` best unfinished continuations by
    total log-probability; a candidate ending in EOS among the top ``num_beams`` becomes a
    finished hypothesis scored sum(log p) / new_tokens ** length_penalty; a prompt is done when
    it has ``num_beams`` hypotheses and (without ``early_stopping``) no running beam can still beat
    the worst of them; at ``max_new_tokens`` the running beams are finished as they are.
    (Unlike ``transformers``, the repetition penalty applies to logits, not to log-probabilities.)
    """
    beams, alpha = options.num_beams, options.length_penalty
    batch = input_ids.shape[0]
    input_ids = input_ids.repeat_interleave(beams, dim=0)
    attention_mask = attention_mask.repeat_interleave(beams, dim=0)
    logits = lm.prefill(input_ids, attention_mask)
    vocab, device = logits.shape[-1], logits.device
    seen = _seen_tokens(input_ids, attention_mask, vocab) if options.repetition_penalty != 1.0 else None
    # All beams of a prompt start identical: only the first may expand at the first step.
    scores = torch.full((batch, beams), -1e9, device=device)
    scores[:, 0] = 0.0
    sequences: list[list[int]] = [[] for _ in range(batch * beams)]
    finished: list[list[tuple[float, list[int]]]] = [[] for _ in range(batch)]  # best first, at most `beams`
    done = [False] * batch

    def add_hypothesis(b: int, total: float, tokens: list[int]) -> None:
        finished[b].append((total / len(tokens) ** alpha, tokens))
        finished[b].sort(key=lambda item: -item[0])
        del finished[b][beams:]

    for step in range(options.max_new_tokens):
        if seen is not None:
            logits = repetition_penalty(logits, seen, options.repetition_penalty)
        totals = F.log_softmax(logits, dim=-1).view(batch, beams, vocab) + scores[:, :, None]
        # 2 x beams candidates: even if `beams` of them end in EOS, `beams` remain to go on with.
        top_scores, top_index = totals.view(batch, -1).topk(2 * beams, dim=-1)
        top_scores, top_index = top_scores.tolist(), top_index.tolist()
        parents, tokens, new_scores = [], [], []
        for b in range(batch):
            kept = 0
            for rank, (total, index) in enumerate(zip(top_scores[b], top_index[b])):
                parent, token = b * beams + index // vocab, index % vocab
                if token == eos_id:
                    if rank < beams and not done[b]:
                        add_hypothesis(b, total, sequences[parent] + [token])
                    continue
                parents.append(parent)
                tokens.append(token)
                new_scores.append(total)
                kept += 1
                if kept == beams:
                    break
        sequences = [sequences[p] + [t] for p, t in zip(parents, tokens)]
        scores = torch.tensor(new_scores, device=device).view(batch, beams)
        for b in range(batch):
            if not done[b] and len(finished[b]) == beams:
                best_running = scores[b, 0].item() / (step + 1) ** alpha
                done[b] = options.early_stopping or best_running <= finished[b][-1][0]
        if all(done) or step + 1 == options.max_new_tokens:
            break
        parents_t, tokens_t = torch.tensor(parents, device=device), torch.tensor(tokens, device=device)
        lm.reorder(parents_t)
        if seen is not None:
            seen = seen[parents_t]
            seen[torch.arange(len(tokens), device=device), tokens_t] = True
        logits = lm.step(tokens_t)
    for b in range(batch):
        if not done[b]:
            for k in range(beams):
                add_hypothesis(b, scores[b, k].item(), sequences[b * beams + k])
    return [finished[b][0][1] for b in range(batch)]


# ---- text in, text out ----------------------------------------------------------------------------
@dataclass
class Generation:
    """What ``generate`` returns, one entry per prompt."""

    prompt_ids: list[list[int]]
    token_ids: list[list[int]]  # the new tokens (with the EOS, or up to the one completing a stop string)
    texts: list[str] | None  # the new text, ending just before a stop string (None without a tokenizer)
    finish_reasons: list[str]  # "eos", "stop" or "length"

    @property
    def text(self) -> str | None:
        return self.texts[0] if self.texts is not None else None


class _Continuations:
    """The growing continuation of each prompt: tokens, text, stop strings, what was streamed."""

    def __init__(self, prompt_ids: list[list[int]], tokenizer, eos_id: int | None, stop: list[str], live: bool):
        self.prompt_ids, self.tokenizer, self.eos_id, self.stop = prompt_ids, tokenizer, eos_id, stop
        self.streaming = tokenizer is not None and live  # the caller wants the text as it comes
        self.live = tokenizer is not None and (live or bool(stop))  # decode after every token
        self.prefix = [self._decode(ids) for ids in prompt_ids] if tokenizer is not None else None
        self.ids: list[list[int]] = [[] for _ in prompt_ids]
        self.texts = ["" for _ in prompt_ids]
        self.reasons: list[str | None] = [None for _ in prompt_ids]
        self.shown = [0 for _ in prompt_ids]

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def _text(self, row: int) -> str:
        # Decoded with the prompt, then the prompt's text removed: tokenizers whose decoder joins
        # tokens with spaces (WordPiece) would otherwise lose the space before the first new token.
        full, prefix = self._decode(self.prompt_ids[row] + self.ids[row]), self.prefix[row]
        return full[len(prefix):] if full.startswith(prefix) else self._decode(self.ids[row])

    def add(self, row: int, token: int) -> bool:
        """Append a token; True when the row has ended (EOS or a stop string)."""
        self.ids[row].append(token)
        if token == self.eos_id:
            self.reasons[row] = "eos"
        elif self.live:
            self.texts[row] = self._text(row)
            cuts = [i for i in (self.texts[row].find(s) for s in self.stop) if i >= 0]
            if cuts:
                self.texts[row] = self.texts[row][: min(cuts)]
                self.reasons[row] = "stop"
        return self.reasons[row] is not None

    def add_running(self, tokens: list[int], running: list[bool]) -> list[bool]:
        return [self.add(row, token) if run else True for row, (token, run) in enumerate(zip(tokens, running))]

    def finish(self) -> None:
        for row, reason in enumerate(self.reasons):
            if reason is None:
                self.reasons[row] = "length"
            if self.tokenizer is not None and reason != "stop":
                self.texts[row] = self._text(row)

    def new_pieces(self) -> Iterator[tuple[int, str]]:
        return ((row, piece) for row in range(len(self.ids)) if (piece := self.new_text(row)))

    def new_text(self, row: int) -> str:
        """Text not shown yet. A running row holds back a tail that may still change: an incomplete
        UTF-8 character (decoded as U+FFFD) or the beginning of a stop string."""
        text = self.texts[row]
        if self.reasons[row] is None:
            hold = len(text) - len(text.rstrip("\ufffd"))
            for s in self.stop:
                hold = max([hold] + [n for n in range(1, len(s)) if text.endswith(s[:n])])
            text = text[: len(text) - hold]
        piece = text[self.shown[row]:]
        self.shown[row] = max(self.shown[row], len(text))
        return piece


def _prompt_ids(prompts, tokenizer) -> list[list[int]]:
    """Prompts as token id lists: a text, a list of texts, a list of ids, or a list of id lists."""
    if isinstance(prompts, torch.Tensor):
        prompts = prompts.tolist()
    if isinstance(prompts, str) or (isinstance(prompts, list) and prompts and isinstance(prompts[0], int)):
        prompts = [prompts]
    if not prompts:
        raise UserError("no prompts given")
    if any(isinstance(p, str) for p in prompts):
        if tokenizer is None:
            raise UserError("text prompts need a tokenizer (give token ids, or a model loaded with ptmzoo.load)")
        start = tokenizer.bos_id if tokenizer.bos_id is not None else tokenizer.document_separator_id
        # No special tokens around the prompt: a decoder continues the text itself. An empty
        # prompt starts after a document boundary, as GPT-2 does.
        encoded = tokenizer.encode_batch(prompts, add_special_tokens=False)
        return [ids or [start] for ids in encoded]
    if any(len(p) == 0 for p in prompts):
        raise UserError("empty token id prompt; give at least one token")
    return [list(map(int, p)) for p in prompts]


def _left_pad(prompt_ids: list[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-align the prompts, so that every row's next token goes to the same position."""
    width = max(map(len, prompt_ids))
    ids = torch.full((len(prompt_ids), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompt_ids), width), dtype=torch.long)
    for row, p in enumerate(prompt_ids):
        ids[row, width - len(p):] = torch.tensor(p)
        mask[row, width - len(p):] = 1
    return ids.to(device), mask.to(device)


def eos_token(options: GenerationOptions, tokenizer) -> int | None:
    """The token that ends a continuation: the option, else the tokenizer's end of document."""
    if options.ignore_eos:
        return None
    if options.eos_token_id is None and tokenizer is not None:
        return tokenizer.eos_id if tokenizer.eos_id is not None else tokenizer.document_separator_id
    return options.eos_token_id


def check_context(model, prompt_length: int, options: GenerationOptions) -> None:
    """A clear error when the prompt and the new tokens do not fit in the model's context."""
    context = model.backbone.max_length
    if context is not None and prompt_length + options.max_new_tokens > context:
        raise UserError(f"prompt ({prompt_length} tokens) + max_new_tokens ({options.max_new_tokens}) exceed "
                        f"the model's context of {context} tokens; shorten the prompt or lower max_new_tokens")


def default_stepper(model, batch: int, input_ids, options: GenerationOptions):
    """``memory_stepper`` for models that read a memory (they declare ``mems``), else ``cached_stepper``."""
    stepper = memory_stepper if "mems" in model.backbone.inputs else cached_stepper
    return stepper(model, batch, input_ids, options)


def cached_stepper(model, batch: int, input_ids: torch.Tensor, options: GenerationOptions):
    """The default stepper: ``CachedLM`` over a KV cache as long as the prompt + the new tokens
    (None: only check that ``model`` can generate)."""
    head = lm_head(model)
    if input_ids is None:
        return head
    total = input_ids.shape[1] + options.max_new_tokens  # within the model's context: checked by _run
    return (compiled_lm(model, batch, total) if options.compile
            else CachedLM(model, batch, total, options.static_cache))


@torch.inference_mode()
def _run(model, prompts, tokenizer, options: GenerationOptions, generator: torch.Generator | None,
         live: bool, stepper: Callable = default_stepper) -> Iterator[tuple[int, str]]:
    """The generation itself: yields (prompt index, new text) as it comes when ``live``, then
    returns the ``Generation`` (as the value of StopIteration). ``stepper(model, batch, input_ids,
    options)`` builds the model's stepper (called first with ``input_ids=None`` to fail early)."""
    if hasattr(model, "tokenizer") and hasattr(model, "model"):  # what ptmzoo.load returns
        model, tokenizer = model.model, tokenizer or model.tokenizer
    stepper(model, 0, None, options)  # fail early on models that cannot generate
    prompt_ids = _prompt_ids(prompts, tokenizer)
    if options.stop and tokenizer is None:
        raise UserError("stop strings need a tokenizer")
    eos_id = eos_token(options, tokenizer)
    device = model.backbone.input_embeddings.weight.device
    input_ids, attention_mask = _left_pad(prompt_ids, 0, device)
    check_context(model, input_ids.shape[1], options)
    use_decoding_layout(model, len(prompt_ids) * options.num_beams)
    lm = stepper(model, len(prompt_ids) * options.num_beams, input_ids, options)
    if generator is None and options.seed is not None:
        generator = torch.Generator(device=device).manual_seed(options.seed)
    rows = _Continuations(prompt_ids, tokenizer, eos_id, options.stop, live)
    yield from decode(model, lm, input_ids, attention_mask, options, eos_id, generator, rows)
    return Generation(prompt_ids, rows.ids, rows.texts if tokenizer is not None else None, rows.reasons)


def decode(model, lm, input_ids: torch.Tensor, attention_mask: torch.Tensor, options: GenerationOptions,
           eos_id: int | None, generator: torch.Generator | None, rows: _Continuations) -> Iterator[tuple[int, str]]:
    """The decoding loop shared by decoders, encoder-decoders and UniLM: beam search or sampling
    with ``lm`` (prefill/step/reorder), collecting tokens in ``rows``; yields (row, new text) as
    it comes when ``rows`` is streaming. The model is in eval mode meanwhile."""
    was_training = model.training
    model.eval()
    if options.constraint is not None:
        lm = options.constraint.restrict(lm)
    try:
        if options.num_beams > 1:
            for row, tokens in enumerate(beam_search(lm, input_ids, attention_mask, options, eos_id)):
                for token in tokens:  # replayed token by token: stop strings cut as when sampling
                    if rows.add(row, token):
                        break
        else:
            for _ in sampling_steps(lm, input_ids, attention_mask, options, eos_id, generator, rows.add_running):
                if rows.streaming:
                    yield from rows.new_pieces()
        rows.finish()
        if rows.streaming:
            yield from rows.new_pieces()
    finally:
        model.train(was_training)


def generate(model, prompts, tokenizer=None, *, on_text: Callable[[int, str], None] | None = None,
             generator: torch.Generator | None = None, stepper: Callable = default_stepper, **options) -> Generation:
    """Continue ``prompts`` with a decoder; returns the new token ids and texts of each prompt.

    ``model``: what ``ptmzoo.load`` returns, or a ``PtmModel`` (then text prompts need
    ``tokenizer``). ``prompts``: a text, a list of texts, or token id lists; several prompts run as
    one left-padded batch. ``options``: the fields of ``GenerationOptions`` (max_new_tokens,
    temperature, top_k, top_p, repetition_penalty, num_beams, length_penalty, early_stopping,
    stop, eos_token_id, ignore_eos, seed, static_cache). ``on_text(index, piece)`` receives the
    new text of prompt ``index`` as it is generated (beam search: once, at the end). ``stepper``:
    how the model runs step by step (``default_stepper``: a KV cache, or the memory of a model that
    reads one, Transformer-XL).

        >>> gpt = ptmzoo.load("runs/gpt2/final")
        >>> ptmzoo.generate(gpt, "To be, or not", max_new_tokens=20, top_p=0.9, seed=0).text
    """
    run = _run(model, prompts, tokenizer, GenerationOptions(**options), generator, live=on_text is not None,
               stepper=stepper)
    while True:
        try:
            row, piece = next(run)
        except StopIteration as end:
            return end.value
        on_text(row, piece)


def stream(model, prompt, tokenizer=None, *, generator: torch.Generator | None = None, **options) -> Iterator[str]:
    """Like ``generate`` for one prompt, as an iterator over the pieces of new text as they come."""
    if not isinstance(prompt, str) and not (isinstance(prompt, list) and prompt and isinstance(prompt[0], int)):
        raise UserError("stream() takes one prompt (a text or a list of token ids); use generate() for a batch")
    for _, piece in _run(model, prompt, tokenizer, GenerationOptions(**options), generator, live=True):
        yield piece


__all__ = [
    "CachedLM",
    "Generation",
    "GenerationOptions",
    "MemoryLM",
    "beam_search",
    "choose_tokens",
    "generate",
    "lm_head",
    "repetition_penalty",
    "sampling_steps",
    "stream",
    "top_k_filter",
    "top_p_filter",
]
