"""T5 (v1.0 and v1.1 configs) and BART against ``transformers`` with the same random weights:
encoder states and decoder logits (padded batches, several shapes), greedy generation, round trips."""

import pytest
import torch

from ptmzoo.generation.seq2seq import generate_seq2seq
from ptmzoo.interop.hf import export_hf, from_hf_model, import_hf, to_hf_model
from ptmzoo.interop.hf.convert import adapter_for_family
from tests.interop.hf_models import padded_batch, randomize

transformers = pytest.importorskip("transformers")

CONFIGS = {
    "t5-v1.0": ("T5ForConditionalGeneration", "t5", {
        "vocab_size": 99, "d_model": 32, "d_kv": 8, "d_ff": 48, "num_layers": 2, "num_heads": 4,
        "relative_attention_num_buckets": 8, "relative_attention_max_distance": 16, "feed_forward_proj": "relu"}),
    "t5-v1.1-odd": ("T5ForConditionalGeneration", "t5", {
        "vocab_size": 120, "d_model": 48, "d_kv": 12, "d_ff": 40, "num_layers": 2, "num_decoder_layers": 3,
        "num_heads": 3, "feed_forward_proj": "gated-gelu", "tie_word_embeddings": False,  # v5: tied, unscaled
        "layer_norm_epsilon": 1e-5}),
    "bart": ("BartForConditionalGeneration", "bart", {
        "vocab_size": 99, "d_model": 32, "encoder_layers": 2, "decoder_layers": 2, "encoder_attention_heads": 4,
        "decoder_attention_heads": 4, "encoder_ffn_dim": 37, "decoder_ffn_dim": 37, "max_position_embeddings": 40}),
    "bart-odd-scaled": ("BartForConditionalGeneration", "bart", {
        "vocab_size": 130, "d_model": 48, "encoder_layers": 1, "decoder_layers": 3, "encoder_attention_heads": 3,
        "decoder_attention_heads": 3, "encoder_ffn_dim": 64, "decoder_ffn_dim": 64, "max_position_embeddings": 30,
        "scale_embedding": True, "activation_function": "gelu_new"}),
}


def hf_seq2seq(name, seed=0):
    architecture, kind, config = CONFIGS[name]
    cfg = transformers.AutoConfig.for_model(kind, **config)
    cfg._attn_implementation = "eager"
    model = randomize(getattr(transformers, architecture)(cfg), seed)
    with torch.no_grad():
        if hasattr(model, "final_logits_bias"):  # a buffer: randomize() leaves it at zero
            model.final_logits_bias.normal_(generator=torch.Generator().manual_seed(seed))
    return model


@pytest.mark.parametrize("name", list(CONFIGS))
@pytest.mark.parametrize("shape", [((7, 3, 5), (4, 6, 2)), ((12,), (9,))])
def test_encoder_states_and_decoder_logits_match(name, shape):
    hf = hf_seq2seq(name)
    ours = from_hf_model(hf)
    vocab = hf.config.vocab_size
    source_lengths, target_lengths = shape
    ids, mask, _ = padded_batch(vocab, source_lengths, max(source_lengths), seed=2)
    dec, dec_mask, _ = padded_batch(vocab, target_lengths, max(target_lengths), seed=3)
    with torch.no_grad():
        theirs = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask)
        mine = ours(ids, mask, decoder_input_ids=dec, decoder_attention_mask=dec_mask)
    real, dec_real = mask.bool(), dec_mask.bool()
    enc_delta = (mine.encoder_last_hidden_state - theirs.encoder_last_hidden_state)[real].abs().max()
    logit_delta = (mine.logits - theirs.logits)[dec_real].abs().max()
    print(f"{name} {shape}: encoder max|d| {enc_delta:.2e}, logits max|d| {logit_delta:.2e}")
    assert enc_delta <= 1e-4 and logit_delta <= 1e-4


@pytest.mark.parametrize("name", list(CONFIGS))
def test_round_trips_give_identical_tensors(name, tmp_path):
    hf = hf_seq2seq(name)
    ours = from_hf_model(hf)
    back = to_hf_model(ours)
    theirs, again = hf.state_dict(), back.state_dict()
    assert set(theirs) == set(again)
    assert all(torch.equal(theirs[k], again[k]) for k in theirs)
    # on disk: export as a HF directory, read it back with transformers and with ptmzoo.load
    from ptmzoo.checkpoint import Pretrained

    export_hf(Pretrained(ours, None, {}, ""), str(tmp_path / "hf"))
    reread = import_hf(str(tmp_path / "hf")).model
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), reread.state_dict().values()))
    loaded = getattr(transformers, CONFIGS[name][0]).from_pretrained(str(tmp_path / "hf"))
    assert all(torch.equal(theirs[k], v) for k, v in loaded.state_dict().items())
    assert adapter_for_family(ours.family).model_type == CONFIGS[name][1]


@pytest.mark.parametrize("name", list(CONFIGS))
def test_greedy_generation_equals_transformers_generate(name):
    hf = hf_seq2seq(name, seed=4)
    ours = from_hf_model(hf)
    vocab = hf.config.vocab_size
    ids, mask, _ = padded_batch(vocab, (6, 3, 5), 6, seed=5)
    steps = 12
    mine = generate_seq2seq(ours, [row[m.bool()].tolist() for row, m in zip(ids, mask)], max_new_tokens=steps,
                            ignore_eos=True).token_ids
    with torch.no_grad():
        theirs = hf.generate(input_ids=ids, attention_mask=mask, do_sample=False, num_beams=1, max_new_tokens=steps,
                             min_new_tokens=steps, eos_token_id=None, forced_eos_token_id=None,
                             forced_bos_token_id=None, pad_token_id=hf.config.pad_token_id,
                             decoder_start_token_id=ours.backbone.decoder_start_id,
                             use_cache=False)  # its cache breaks with num_decoder_layers != num_layers
    assert mine == theirs[:, 1:].tolist()  # transformers' output starts with the decoder start token


def test_untied_v1_1_directory_of_older_transformers(tmp_path):
    """Before transformers 5, v1.1 checkpoints had tie_word_embeddings=false and their own lm_head."""
    import json

    from safetensors.torch import save_file

    hf = hf_seq2seq("t5-v1.1-odd")
    state = {k: v.clone() for k, v in hf.state_dict().items() if "embed_tokens" not in k}
    state["lm_head.weight"] = torch.randn(state["lm_head.weight"].shape, generator=torch.Generator().manual_seed(9))
    config = {k: v for k, v in hf.config.to_dict().items() if k != "scale_decoder_outputs"}
    config.update(tie_word_embeddings=False, architectures=["T5ForConditionalGeneration"])
    (tmp_path / "config.json").write_text(json.dumps(config))
    save_file(state, str(tmp_path / "model.safetensors"))
    ours = import_hf(str(tmp_path)).model
    assert not ours.config.tie_word_embeddings and not ours.config.scale_decoder_outputs
    ids, mask, _ = padded_batch(120, (5, 3), 5, seed=2)
    dec = torch.randint(0, 120, (2, 4))
    with torch.no_grad():
        out = hf(input_ids=ids, attention_mask=mask, decoder_input_ids=dec, output_hidden_states=True)
        expected = out.decoder_hidden_states[-1] @ state["lm_head.weight"].T
        delta = (ours(ids, mask, decoder_input_ids=dec).logits - expected).abs().max()
    assert delta <= 1e-4
