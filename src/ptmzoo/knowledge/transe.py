"""TransE (Bordes et al., 2013): entity and relation vectors such that head + relation ≈ tail.

ERNIE (Zhang et al., 2019) feeds TransE vectors of the entities mentioned in a text into its
knowledge encoder. ``ptmzoo transe`` trains them from a triple file, one fact a line::

    head<TAB>relation<TAB>tail

(names; blank lines and lines starting with ``#`` are skipped, whitespace inside a name becomes
``_`` because vector files cannot hold it). Training follows the paper: the margin ranking loss
``[margin + d(h + r, t) - d(h' + r, t')]+`` against a corrupted triple in which the head or the
tail (each half of the time) is replaced by a random entity, ``d`` the L2 (default) or L1
distance, relation vectors initialised uniform in ±6/√k and normalised once, entity vectors
renormalised to unit L2 norm before each mini-batch uses them (and all of them at the end). With
unit-norm entities an L1 distance grows with the dimension, so L1 wants a larger margin; choose
with ``--eval-fraction``. The optimiser is Adam on sparse gradients (``SparseAdam``: only the rows
a batch touches are updated; the paper used plain SGD). Output: the entity vectors in word2vec text format
(what ``ptmzoo prepare --entities`` reads) and the relation vectors in a second file.

``link_prediction`` is the paper's evaluation: for each test triple, rank the true tail (head)
among all entities by distance, in the "filtered" setting that leaves out the other true triples.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..errors import UserError, require_file
from ..textio import open_text

NORMS = {"L1": 1, "L2": 2}


@dataclass
class Triples:
    entities: list[str]  # id -> name
    relations: list[str]
    triples: np.ndarray  # [n, 3] int64: head id, relation id, tail id


def _name(text: str) -> str:
    return "_".join(text.split())


def read_triples(path: str) -> Triples:
    """A TSV of ``head<TAB>relation<TAB>tail`` lines; repeated facts are kept once."""
    require_file(path, "triple file")
    entities: dict[str, int] = {}
    relations: dict[str, int] = {}
    rows: dict[tuple[int, int, int], None] = {}
    with open_text(path) as fh:
        for number, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            fields = line.split("\t")
            if len(fields) != 3:
                raise UserError(f"{path}:{number}: expected head<TAB>relation<TAB>tail (3 tab-separated fields), "
                                f"found {len(fields)}")
            names = [_name(f) for f in fields]
            for role, name in zip(("head", "relation", "tail"), names):
                if not name:
                    raise UserError(f"{path}:{number}: the {role} is empty; expected head<TAB>relation<TAB>tail")
            head, relation, tail = names
            key = (entities.setdefault(head, len(entities)), relations.setdefault(relation, len(relations)),
                   entities.setdefault(tail, len(entities)))
            rows[key] = None
    if not rows:
        raise UserError(f"{path} holds no triples; expected head<TAB>relation<TAB>tail lines")
    return Triples(list(entities), list(relations), np.asarray(list(rows), dtype=np.int64).reshape(-1, 3))


class TransE(nn.Module):
    def __init__(self, num_entities: int, num_relations: int, dim: int, norm: int = 1):
        super().__init__()
        self.norm = norm
        self.entities = nn.Embedding(num_entities, dim, sparse=True)
        self.relations = nn.Embedding(num_relations, dim, sparse=True)
        bound = 6 / dim ** 0.5
        with torch.no_grad():
            nn.init.uniform_(self.entities.weight, -bound, bound)
            nn.init.uniform_(self.relations.weight, -bound, bound)
            self.relations.weight.div_(self.relations.weight.norm(dim=1, keepdim=True))
            self.renormalize()

    @torch.no_grad()
    def renormalize(self, rows: torch.Tensor | None = None) -> None:
        """Entity vectors (all, or the given rows) back to unit L2 norm."""
        weight = self.entities.weight
        if rows is None:
            weight.div_(weight.norm(dim=1, keepdim=True).clamp_min(1e-12))
        else:
            weight[rows] = weight[rows] / weight[rows].norm(dim=1, keepdim=True).clamp_min(1e-12)

    def distance(self, heads: torch.Tensor, relations: torch.Tensor, tails: torch.Tensor) -> torch.Tensor:
        return (self.entities(heads) + self.relations(relations) - self.entities(tails)).norm(p=self.norm, dim=-1)


def corrupt(batch: torch.Tensor, num_entities: int, generator: torch.Generator) -> torch.Tensor:
    """Each triple with its head or its tail (even odds) replaced by a uniformly drawn entity."""
    corrupted = batch.clone()
    replace_head = torch.rand(len(batch), generator=generator) < 0.5
    random = torch.randint(num_entities, (len(batch),), generator=generator)
    corrupted[:, 0] = torch.where(replace_head, random, batch[:, 0])
    corrupted[:, 2] = torch.where(replace_head, batch[:, 2], random)
    return corrupted


def train_transe(data: Triples, dim: int = 100, epochs: int = 100, margin: float = 1.0, lr: float = 0.01,
                 norm: str = "L2", batch_size: int = 1024, seed: int = 0, device: str = "cpu",
                 progress: bool = False) -> TransE:
    if norm not in NORMS:
        raise UserError(f"--norm must be L1 or L2, not {norm!r}")
    if dim < 1 or epochs < 1 or batch_size < 1:
        raise UserError("--dim, --epochs and --batch-size must be at least 1")
    if margin <= 0 or lr <= 0:
        raise UserError("--margin and --lr must be positive")
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = TransE(len(data.entities), len(data.relations), dim, NORMS[norm]).to(device)
    optimizer = torch.optim.SparseAdam(list(model.parameters()), lr=lr)
    triples = torch.from_numpy(data.triples)
    bar = tqdm(range(epochs), desc="transe", disable=not progress)
    for _ in bar:
        total = 0.0
        for batch in triples[torch.randperm(len(triples), generator=generator)].split(batch_size):
            negative = corrupt(batch, len(data.entities), generator)
            batch, negative = batch.to(device), negative.to(device)
            model.renormalize(torch.cat([batch[:, 0], batch[:, 2], negative[:, 0], negative[:, 2]]).unique())
            positive_d = model.distance(batch[:, 0], batch[:, 1], batch[:, 2])
            negative_d = model.distance(negative[:, 0], negative[:, 1], negative[:, 2])
            loss = torch.relu(margin + positive_d - negative_d).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
        bar.set_postfix(loss=f"{total / len(triples):.4f}")
    model.renormalize()
    return model


@torch.no_grad()
def link_prediction(model: TransE, test: np.ndarray, known: np.ndarray, filtered: bool = True,
                    batch_size: int = 256) -> dict[str, float]:
    """Mean rank, mean reciprocal rank and hits@10 of the true tail and head of each ``test``
    triple among all entities; ``filtered`` leaves out candidates that make a ``known`` triple."""
    entities = model.entities.weight
    device = entities.device
    tails_of: dict[tuple[int, int], list[int]] = {}
    heads_of: dict[tuple[int, int], list[int]] = {}
    for h, r, t in known.tolist():
        tails_of.setdefault((h, r), []).append(t)
        heads_of.setdefault((t, r), []).append(h)
    ranks = []
    for chunk in torch.from_numpy(test).split(batch_size):
        chunk = chunk.to(device)
        heads, relations, tails = chunk[:, 0], chunk[:, 1], chunk[:, 2]
        translated = entities[heads] + model.relations.weight[relations]  # predict tails: h + r vs every e
        back = entities[tails] - model.relations.weight[relations]  # predict heads: e vs t - r
        for query, truth, others in ((translated, tails, [tails_of.get((h, r), []) for h, r, _ in chunk.tolist()]),
                                     (back, heads, [heads_of.get((t, r), []) for _, r, t in chunk.tolist()])):
            distance = torch.cdist(query, entities, p=model.norm)  # [b, entities]
            true = distance.gather(1, truth[:, None])
            better = distance < true
            if filtered:
                rows = [i for i, row in enumerate(others) for _ in row]
                cols = [c for row in others for c in row]
                better[torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long)] = False
            ranks.append(better.sum(1) + 1)
    rank = torch.cat(ranks).double()
    return {"mean_rank": float(rank.mean()), "mrr": float((1 / rank).mean()),
            "hits@10": float((rank <= 10).double().mean())}


def split_held_out(triples: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, held out): about ``fraction`` of the triples, only ones whose head, relation and tail
    all still occur in the training part (nothing can be learnt about an unseen entity)."""
    order = np.random.default_rng(seed).permutation(len(triples))
    wanted = round(fraction * len(triples))
    relation_count = np.bincount(triples[:, 1])
    entity_count = np.bincount(np.concatenate([triples[:, 0], triples[:, 2]]))
    held = []
    for index in order:
        if len(held) >= wanted:
            break
        h, r, t = triples[index]
        if entity_count[h] > 1 + (h == t) and entity_count[t] > 1 + (h == t) and relation_count[r] > 1:
            entity_count[h] -= 1
            entity_count[t] -= 1
            relation_count[r] -= 1
            held.append(index)
    mask = np.zeros(len(triples), dtype=bool)
    mask[held] = True
    return triples[~mask], triples[mask]


def relations_path(out: str) -> str:
    root, ext = os.path.splitext(out)
    return f"{root}.relations{ext or '.vec'}"
