"""The neural probabilistic language model of Bengio et al. (2003), whose word feature matrix C
gives the word vectors.

    x = [C(w_{t-1}), ..., C(w_{t-n+1})]          the n-1 previous words' features, concatenated
    y = b + W x + U tanh(d + H x)                  W: the optional direct connections
    P(w_t | context) = softmax(y)

trained by stochastic gradient descent on the log-likelihood with the paper's learning-rate decay
eps_t = eps_0 / (1 + r t) and weight decay on the weight matrices (H, U, W; not the biases nor C).
Minibatches (``batch_size`` windows) replace the paper's one example per update. Windows stay
inside a sentence; the positions before its first word are a padding word that has no vector.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from ..errors import UserError
from .corpus import Vocabulary, batches


@dataclass
class NNLMOptions:
    dim: int = 100  # m, the word features
    context: int = 4  # n - 1 previous words (the paper's best models: n = 5)
    hidden: int = 100  # h
    direct: bool = True  # the direct connections W from the features to the output
    min_count: int = 5
    epochs: int = 5
    alpha: float = 0.5  # eps_0, for the mean loss of a minibatch
    decay: float = 1e-5  # r in eps_0 / (1 + r t), t = updates so far
    weight_decay: float = 1e-4
    batch_size: int = 256
    workers: int = 3  # torch threads
    seed: int = 1
    device: str = "cpu"

    def validate(self) -> None:
        for name in ("dim", "context", "hidden", "epochs", "batch_size", "workers"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        if self.alpha <= 0:
            raise UserError("--alpha must be positive")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise UserError("--device cuda: no CUDA device is available; use --device cpu")


class NNLMNetwork(nn.Module):
    def __init__(self, vocab_size: int, dim: int, context: int, hidden: int, direct: bool):
        super().__init__()
        self.pad = vocab_size  # the padding word before a sentence: the last row of C
        self.C = nn.Embedding(vocab_size + 1, dim)
        self.H = nn.Linear(context * dim, hidden)  # with d, the hidden bias
        self.U = nn.Linear(hidden, vocab_size)  # with b, the output bias
        self.W = nn.Linear(context * dim, vocab_size, bias=False) if direct else None
        for weight in (self.C.weight, self.H.weight, self.U.weight):
            nn.init.uniform_(weight, -1 / np.sqrt(weight.shape[-1]), 1 / np.sqrt(weight.shape[-1]))
        if self.W is not None:
            nn.init.zeros_(self.W.weight)

    def forward(self, contexts: torch.Tensor) -> torch.Tensor:
        """Logits y [batch, vocab] for contexts [batch, n-1] of word ids (padding allowed)."""
        x = self.C(contexts).flatten(1)
        y = self.U(torch.tanh(self.H(x)))
        return y + self.W(x) if self.W is not None else y

    def loss(self, contexts: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(self(contexts), targets)


def windows(ids: np.ndarray, ends: np.ndarray, context: int, pad: int) -> tuple[np.ndarray, np.ndarray]:
    """For each word of the sentences, its ``context`` previous words (padding before the start of
    its sentence, the nearest word last) and the word itself."""
    starts = np.concatenate([[0], ends[:-1]])
    sentence_start = np.repeat(starts, ends - starts)
    position = np.arange(len(ids))
    offsets = np.arange(context, 0, -1)  # w_{t-n+1} ... w_{t-1}
    source = position[:, None] - offsets[None, :]
    padded = source < sentence_start[:, None]
    contexts = np.where(padded, pad, ids[np.maximum(source, 0)])
    return contexts.astype(np.int64), ids.astype(np.int64)


class NNLM:
    method = "nnlm"

    def __init__(self, vocab: Vocabulary, options: NNLMOptions | None = None):
        self.options = options = options or NNLMOptions()
        options.validate()
        self.vocab = vocab
        torch.manual_seed(options.seed)
        self.network = NNLMNetwork(len(vocab), options.dim, options.context, options.hidden,
                                   options.direct).to(options.device)
        self.rng = np.random.default_rng(options.seed)
        self.losses: list[float] = []

    @property
    def words(self) -> list[str]:
        return self.vocab.words

    def train(self, corpus, progress: bool = True) -> dict:
        from tqdm import tqdm

        o = self.options
        threads = torch.get_num_threads()
        torch.set_num_threads(o.workers)
        decayed = [p for name, p in self.network.named_parameters() if name.endswith("weight") and name != "C.weight"]
        others = [p for name, p in self.network.named_parameters() if not any(p is q for q in decayed)]
        optimizer = torch.optim.SGD([{"params": decayed, "weight_decay": o.weight_decay},
                                     {"params": others, "weight_decay": 0.0}], lr=o.alpha)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda t: 1 / (1 + o.decay * t))
        started, seen, summed = time.perf_counter(), 0, 0.0
        bar = tqdm(total=self.vocab.corpus_words * o.epochs, unit="word", unit_scale=True, desc="nnlm",
                   disable=not progress, leave=False)
        try:
            for _ in range(o.epochs):
                for batch in batches(corpus, self.vocab):
                    contexts, targets = windows(batch.ids, batch.ends, o.context, self.network.pad)
                    order = self.rng.permutation(len(targets))  # within a job: fewer correlated updates
                    for start in range(0, len(order), o.batch_size):
                        part = order[start:start + o.batch_size]
                        loss = self.network.loss(torch.from_numpy(contexts[part]).to(o.device),
                                                 torch.from_numpy(targets[part]).to(o.device))
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        optimizer.step()
                        schedule.step()
                        summed += loss.item() * len(part)
                        seen += len(part)
                    bar.update(batch.corpus_words)
                    bar.set_postfix(loss=f"{summed / max(seen, 1):.3f}", refresh=False)
                self.losses.append(summed / max(seen, 1))
                summed, seen = 0.0, 0
        finally:
            bar.close()
            torch.set_num_threads(threads)
        if not np.isfinite(self.losses[-1]):
            raise UserError("NNLM training diverged (the loss is not finite); lower --alpha")
        seconds = time.perf_counter() - started
        words = self.vocab.corpus_words * o.epochs
        return {"corpus_words": words, "seconds": round(seconds, 3), "words_per_s": round(words / max(seconds, 1e-9)),
                "epoch_losses": [round(x, 4) for x in self.losses]}

    def vectors(self) -> np.ndarray:
        return self.network.C.weight.detach()[:-1].float().cpu().numpy()

    def settings(self) -> dict:
        return asdict(self.options)
