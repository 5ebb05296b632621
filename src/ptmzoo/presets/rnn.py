"""RNN-era presets: ELMo's three AllenNLP sizes, AWD-LSTM (the ULMFiT / SiATL language model) and CoVe.

ELMo (AllenNLP's options files): the same character CNN (16-dimensional characters, 2048 filters
of widths 1-7) for all three; small: 1 highway layer, 1024 LSTM cells projected to 128; medium:
1 highway layer, 2048 cells projected to 256; original: 2 highway layers, 4096 cells projected to
512. AllenNLP counts 13.6M / 28.0M / 93.6M parameters: the biLM without its softmax, one bias per
LSTM cell (``catalog.count_parameters`` adds the softmax over the preset's vocabulary and
``nn.LSTM``'s second bias vector; the README gives both counts).
AWD-LSTM (Merity et al., 2018, WikiText-2): 400-dimensional tied embeddings, 3 layers of 1150 cells,
the paper's WikiText-2 dropouts, BPTT 70. CoVe (McCann et al., 2017): 300-dimensional (GloVe-sized)
embeddings, a 2-layer biLSTM encoder of 300 units per direction, a 2-layer LSTM decoder with
attention; trained on translation (``ptmzoo init`` + ``finetune --task translation``).
"""

from .base import Preset

PRESETS: list[Preset] = []  # registered by ptmzoo.presets

_ELMO_SIZES = {  # name: (highway layers, LSTM cells, projection, AllenNLP's count)
    "elmo-small": (1, 1024, 128, "13.6M"),
    "elmo-medium": (1, 2048, 256, "28.0M"),
    "elmo-original": (2, 4096, 512, "93.6M"),
}
for _name, (_highway, _cells, _projection, _count) in _ELMO_SIZES.items():
    PRESETS.append(Preset(
        name=_name, family="elmo",
        model={"num_highway": _highway, "lstm_size": _cells, "hidden_size": 2 * _projection, "num_layers": 2},
        objectives={"bilm": {}}, seq_len=64,
        description=f"ELMo biLM: char CNN, {_highway} highway, 2 x {_cells} LSTM -> {_projection} "
                    f"(AllenNLP: {_count} without softmax), bidirectional LM",
    ))

PRESETS.append(Preset(
    name="awd-lstm", family="awd_lstm",
    model={"hidden_size": 400, "lstm_size": 1150, "num_layers": 3, "embed_dropout": 0.1, "input_dropout": 0.65,
           "hidden_dropout": 0.2, "output_dropout": 0.4, "weight_dropout": 0.5},
    objectives={"awd_lm": {}}, seq_len=70,
    description="AWD-LSTM: 3 x 1150 weight-dropped LSTM, 400-d tied embeddings, BPTT LM with AR/TAR",
))

PRESETS.append(Preset(
    name="cove", family="cove",
    model={"embedding_size": 300, "lstm_size": 300, "num_layers": 2},
    seq_len=128,
    description="CoVe: 2-layer biLSTM encoder of an attentional LSTM translation model (train with "
                "--task translation)",
))
