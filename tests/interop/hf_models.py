"""Random-weight transformers models and padded batches shared by the interop tests."""

import torch

transformers = __import__("pytest").importorskip("transformers")

BERT_CONFIGS = {
    "bert-small-even": {"vocab_size": 99, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
                        "intermediate_size": 37, "max_position_embeddings": 64, "type_vocab_size": 2},
    "bert-odd-heads": {"vocab_size": 211, "hidden_size": 48, "num_hidden_layers": 3, "num_attention_heads": 3,
                       "intermediate_size": 64, "max_position_embeddings": 40, "type_vocab_size": 3,
                       "hidden_act": "gelu_new", "layer_norm_eps": 1e-7, "pad_token_id": 1},
}
GPT2_CONFIGS = {
    "gpt2-small-even": {"vocab_size": 97, "n_embd": 32, "n_layer": 2, "n_head": 4, "n_positions": 64},
    "gpt2-odd-untied": {"vocab_size": 150, "n_embd": 48, "n_layer": 3, "n_head": 3, "n_positions": 32, "n_inner": 80,
                        "layer_norm_epsilon": 1e-6, "tie_word_embeddings": False},
}


def randomize(model, seed=0):
    """Every weight random (LayerNorm gains around 1), so a misplaced bias or gain shows up."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen) * 0.2
            gain = name.endswith("weight") and param.dim() == 1  # LayerNorm weights
            param.copy_(noise + 1.0 if gain else noise)
    return model.eval()


def hf_model(architecture, config, seed=0, attn="eager"):
    kind = "bert" if architecture.startswith("Bert") else "gpt2"
    cfg = transformers.AutoConfig.for_model(kind, **config)
    cfg._attn_implementation = attn
    return randomize(getattr(transformers, architecture)(cfg), seed)


def padded_batch(vocab_size, lengths, max_len, type_vocab=None, left=False, seed=1):
    """ids, attention mask (real tokens = 1) and segment ids for rows of the given lengths."""
    gen = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab_size, (len(lengths), max_len), generator=gen)
    mask = torch.zeros(len(lengths), max_len, dtype=torch.long)
    for row, n in enumerate(lengths):
        if left:
            mask[row, max_len - n:] = 1
        else:
            mask[row, :n] = 1
    types = None
    if type_vocab:
        types = torch.zeros_like(ids)
        for row, n in enumerate(lengths):
            types[row, n // 2: n] = 1 + row % (type_vocab - 1)
    return ids, mask, types


def round_trip(hf):
    """HF -> ptmzoo -> HF gives back identical tensors (and ptmzoo -> HF -> ptmzoo too); the copy."""
    from ptmzoo.interop.hf import from_hf_model, to_hf_model

    ptm = from_hf_model(hf)
    back = to_hf_model(ptm)
    before, after = hf.state_dict(), back.state_dict()
    assert set(before) == set(after)
    for key in before:
        assert torch.equal(before[key], after[key]), key
    again = from_hf_model(back).state_dict()
    for key, tensor in ptm.state_dict().items():
        assert torch.equal(tensor, again[key]), key
    return back
