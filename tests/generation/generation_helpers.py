"""Helpers of the generation tests: a tiny random GPT-2, a table-driven fake language model, and the
checks that cached decoding gives the logits of full passes (decoders, encoder-decoders, UniLM)."""

import torch

import ptmzoo.objectives  # noqa: F401  (registers the clm head)
from ptmzoo.catalog import HEADS, build_backbone
from ptmzoo.generation import KVCache
from ptmzoo.generation.seq2seq import Seq2SeqLM
from ptmzoo.generation.unilm import UnilmLM, mlm_head
from ptmzoo.models.base import BackboneOutput
from ptmzoo.models.model import PtmModel
from ptmzoo.nn.attention import padding_mask, unified_mask
from ptmzoo.presets import get_preset


def tiny_gpt2(vocab_size: int = 97, seed: int = 0, preset: str = "gpt2-tiny", **overrides) -> PtmModel:
    """A tiny decoder preset (gpt2-tiny, gpt1-tiny, gpt3-tiny), narrower and with a small
    vocabulary: random weights, eval mode."""
    family = get_preset(preset).family
    config = {**get_preset(preset).model, "vocab_size": vocab_size, "hidden_size": 64, "num_heads": 4,
              "intermediate_size": 128, "max_position_embeddings": 128, **overrides}
    torch.manual_seed(seed)
    model = PtmModel(family, build_backbone(family, config))
    model.add_head("clm", HEADS["clm"])
    return model.eval()


class TableLM:
    """A stepper whose next-token distribution depends only on the last token: ``table[last]``."""

    def __init__(self, table: torch.Tensor):
        self.log_probs = table.log()

    def prefill(self, input_ids, attention_mask):
        return self.log_probs[input_ids[:, -1]]

    def step(self, tokens):
        return self.log_probs[tokens]

    def reorder(self, index):
        pass


# ---- cached decoding = full passes: the checks of tests/generation, tests/models and the contract tests
def step_by_step(model, ids, mask, positions, cache, chunks):
    """Logits of ``ids`` fed through ``cache`` in chunks of the given sizes (the attention mask
    covers the cached and the new tokens)."""
    logits, start = [], 0
    for size in chunks:
        end = start + size
        out = model(ids[:, start:end], attention_mask=mask[:, :end], position_ids=positions[:, start:end],
                    cache=cache)
        logits.append(out.logits)
        start = end
    return torch.cat(logits, dim=1)


def assert_cache_equals_full_pass(model, lengths=(9, 4, 7), new=5, chunkings=((9, 1, 1, 1, 1, 1),),
                                  static=False, seed=1):
    """Left-padded prompts of ``lengths`` tokens continued by ``new`` more, fed through a ``KVCache``
    in each of ``chunkings``: every row's logits are those of a full pass over the row alone, and
    the padded query rows stay finite. ``model``: a decoder ``PtmModel`` whose first head is its LM head."""
    vocab = model.config.vocab_size
    width = max(lengths)
    ids = torch.randint(1, vocab, (len(lengths), width + new), generator=torch.Generator().manual_seed(seed))
    mask = torch.ones_like(ids)
    for row, n in enumerate(lengths):
        mask[row, : width - n] = 0
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    for chunks in chunkings:
        assert sum(chunks) == width + new
        cache = KVCache.for_backbone(model.backbone, len(lengths), width + new, static=static)
        with torch.no_grad():
            cached = step_by_step(model, ids, mask, positions, cache, chunks)
            for row, n in enumerate(lengths):
                alone = model(ids[row : row + 1, width - n :]).logits[0]
                torch.testing.assert_close(cached[row, width - n :], alone, atol=1e-5, rtol=0)
        assert torch.isfinite(cached).all()
        assert cache.length == width + new


def seq2seq_cached_logits(model, source, mask, target, first: int, static: bool = False):
    """An encoder-decoder's logits as its decoding stepper (``generation.seq2seq.Seq2SeqLM``) computes
    them: the source encoded once, ``target[:, :first]`` in one decoder pass, then one token at a
    time through the cache. Row j of the result is the full pass's logits at position
    ``first - 1 + j``; also returns the cache."""
    lm = Seq2SeqLM(model, source.shape[0], target.shape[1] + 1, static=static)
    with torch.no_grad():
        lm.memory = model.backbone.encode(source, mask)
        lm.memory_mask = padding_mask(mask)
        steps = [lm._logits(target[:, :first])]
        steps += [lm._logits(target[:, i : i + 1]) for i in range(first, target.shape[1])]
    return torch.stack(steps, dim=1), lm.cache


def unilm_cached_and_full_logits(model, source: list[int], chosen: list[int], mask_id: int):
    """UniLM's next-token logits as its decoding stepper (``generation.unilm.UnilmLM``) computes them
    -- the source once, then [token, MASK] per step through the cache -- and from full passes of
    source + target so far + [MASK] under the seq2seq mask; two lists of [vocab] tensors."""
    head = mlm_head(model)
    lm = UnilmLM(model, 1, len(source) + len(chosen) + 2, mask_id)
    with torch.no_grad():
        cached = [lm.prefill(torch.tensor([source]), torch.ones(1, len(source), dtype=torch.long))[0]]
        cached += [lm.step(torch.tensor([token]))[0] for token in chosen]
        full = []
        for step in range(len(chosen) + 1):
            target = chosen[:step] + [mask_id]
            ids = torch.tensor([source + target])
            types = torch.tensor([[0] * len(source) + [1] * len(target)])
            states = model.backbone(ids, unified_mask("seq2seq", torch.ones_like(ids), types), types).last_hidden_state
            full.append(head.logits(BackboneOutput(states), {})[0, -1])
    return cached, full
