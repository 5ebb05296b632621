"""``ptmzoo transe``: TransE vectors for ERNIE from a triple file (the work is in ``transe``)."""

from __future__ import annotations

import argparse

from ..errors import UserError
from ..textio import add_encoding_argument

NORMS = ("L1", "L2")


def add_transe_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--triples", required=True, help="TSV file of head<TAB>relation<TAB>tail lines")
    p.add_argument("--out", required=True, help="entity vector file to write (word2vec text format)")
    p.add_argument("--relations-out", help="relation vector file (default: OUT with .relations before the extension)")
    p.add_argument("--dim", type=int, default=100, help="vector size (ERNIE: 100)")
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--margin", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--norm", choices=NORMS, default="L2",
                   help="distance of h + r to t (L1 needs a margin that grows with --dim)")
    p.add_argument("--batch-size", type=int, default=1024)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--eval-fraction", type=float, default=0.0,
                   help="hold out this fraction of the triples and report filtered mean rank and hits@10 on them")
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--overwrite", action="store_true", help="replace existing vector files")
    p.add_argument("--no-progress", action="store_true")
    add_encoding_argument(p)


def cmd_transe(args: argparse.Namespace) -> None:
    import torch

    from ..outputs import claim_output_file
    from .transe import (
        Triples,
        link_prediction,
        read_triples,
        relations_path,
        split_held_out,
        train_transe,
    )
    from .vectors import write_vectors

    if not 0 <= args.eval_fraction < 1:
        raise UserError("--eval-fraction must be in [0, 1)")
    relations_out = args.relations_out or relations_path(args.out)
    for path, flag in ((args.out, "--out"), (relations_out, "--relations-out")):
        claim_output_file(path, args.overwrite, inputs=[args.triples], flag=flag)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError("--device cuda: no CUDA device is available; use --device cpu")
    data = read_triples(args.triples)
    train, held_out = data.triples, data.triples[:0]
    if args.eval_fraction:
        train, held_out = split_held_out(data.triples, args.eval_fraction, args.seed)
    print(f"{len(data.entities):,} entities, {len(data.relations):,} relations, {len(data.triples):,} triples"
          + (f" ({len(held_out):,} held out)" if len(held_out) else ""))
    model = train_transe(Triples(data.entities, data.relations, train), args.dim, args.epochs, args.margin, args.lr,
                         args.norm, args.batch_size, args.seed, args.device, progress=not args.no_progress)
    if len(held_out):
        metrics = link_prediction(model, held_out, data.triples)
        print(f"held-out link prediction (filtered): mean rank {metrics['mean_rank']:.1f}, "
              f"hits@10 {metrics['hits@10']:.3f}, MRR {metrics['mrr']:.3f} "
              f"(chance: mean rank {(len(data.entities) + 1) / 2:.0f}, hits@10 {min(1, 10 / len(data.entities)):.3f})")
    write_vectors(args.out, data.entities, model.entities.weight.detach().cpu().numpy())
    write_vectors(relations_out, data.relations, model.relations.weight.detach().cpu().numpy())
    print(f"entity vectors -> {args.out}; relation vectors -> {relations_out}")
