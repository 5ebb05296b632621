"""BiLSTM presets: the Distilled BiLSTM student (Tang et al., 2019): 300-dimensional embeddings, one
bidirectional layer of 150 units per direction, a 200-unit ReLU layer (trained by ``ptmzoo distill
--method bilstm``; no pre-training objective of its own)."""

from .base import Preset

PRESETS: list[Preset] = [
    Preset(name="bilstm", family="bilstm",
           model={"embedding_size": 300, "lstm_size": 150, "num_layers": 1, "hidden_size": 200},
           description="BiLSTM sentence encoder (the Distilled BiLSTM student), no pre-training objective"),
]
