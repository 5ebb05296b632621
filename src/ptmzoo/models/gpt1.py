"""GPT-1: the original generative pre-training decoder (Radford et al., 2018).

The same network as GPT-2 (``gpt2.py``: token + learned position embeddings, masked
self-attention, GELU feed-forward, tied LM head, KV cache) with the original Transformer's
*post*-LayerNorm: each sub-layer's output is added to its input and the sum normalised, so no
final LayerNorm is needed. 512 positions, 40,478 BPE tokens; weights start from N(0, 0.02)
without GPT-2's depth-scaled residual initialisation.
"""

from __future__ import annotations

from dataclasses import dataclass

from .gpt2 import GPT2Block, GPT2Config, GPT2Model


@dataclass
class GPT1Config(GPT2Config):
    vocab_size: int = 40478
    max_position_embeddings: int = 512


class GPT1Block(GPT2Block):
    def forward(self, x, mask, cache=None, layer: int = 0):
        x = self.attention_norm(x + self.dropout(self.attention(x, mask, cache=cache, layer=layer)))
        return self.ffn_norm(x + self.dropout(self.ffn(x)))


class GPT1Model(GPT2Model):
    config_class = GPT1Config
    block_class = GPT1Block
    final_layer_norm = False

    def init_residuals(self) -> None:
        pass  # GPT-1 initialises every weight from N(0, initializer_range)
