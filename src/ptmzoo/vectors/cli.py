"""``ptmzoo vectors train | eval | neighbors``: static word vectors (the work is in ``train``,
``evaluate`` and ``keyed``; nothing heavy is imported until a command runs)."""

from __future__ import annotations

import argparse
import json
import os

from ..errors import UserError
from ..textio import add_encoding_argument
from .names import METHODS, SEGMENTS

DESCRIPTION = ("Train word vectors on plain text, evaluate them on analogies and word similarity, list nearest "
               "neighbours.")
TRAIN_DESCRIPTION = ("Input: UTF-8 text (or .gz), one sentence a line, words separated by whitespace; read again on "
                     "every pass, so any size works. Output: DIR/vectors.txt and DIR/vectors.bin (word2vec text and "
                     "binary formats), DIR/vectors.json (the settings), and for FastText DIR/ngrams.npz (vectors for "
                     "words outside the vocabulary). Options left out take the method's defaults (those of "
                     "word2vec.c/gensim, the GloVe paper, fastText, Bengio et al.).")
EVAL_DESCRIPTION = ("Analogies: questions-words format (': section', then 'a b c d'; Google, CA8), answered by 3CosAdd "
                    "and 3CosMul. Similarity: 'w1<TAB>w2<TAB>score' (WordSim-353, SimLex-999), Spearman and Pearson "
                    "correlation.")


def eval_arguments(ev: argparse.ArgumentParser) -> None:
    ev.add_argument("vectors", metavar="DIR", help="output directory of `ptmzoo vectors train`, or a vector file")
    ev.add_argument("--analogy", nargs="+", default=[], metavar="FILE", help="analogy files")
    ev.add_argument("--similarity", nargs="+", default=[], metavar="FILE", help="word-pair similarity files")
    ev.add_argument("--restrict-vocab", type=int, default=300_000,
                    help="only the N most frequent words answer and are asked (gensim's default 300000)")
    ev.add_argument("--case-sensitive", action="store_true", help="compare words as written (default: ignore case)")
    ev.add_argument("--json", action="store_true", help="print the full results (per section) as JSON")
    add_encoding_argument(ev)


def neighbors_arguments(nb: argparse.ArgumentParser) -> None:
    nb.add_argument("vectors", metavar="DIR", help="output directory of `ptmzoo vectors train`, or a vector file")
    nb.add_argument("words", nargs="+", metavar="WORD")
    nb.add_argument("--topn", type=int, default=10)


def train_arguments(t: argparse.ArgumentParser) -> None:
    t.add_argument("--method", required=True, choices=METHODS)
    t.add_argument("--input", nargs="+", required=True, metavar="FILE", help="corpus files")
    t.add_argument("--out", required=True, metavar="DIR", help="output directory")
    t.add_argument("--overwrite", action="store_true", help="write into a non-empty --out (only ptmzoo's files)")
    t.add_argument("--lowercase", action="store_true", help="lower-case the text first")
    t.add_argument("--segment", choices=SEGMENTS,
                   help="Chinese without spaces: segment into words with jieba, or split into characters "
                        "(character vectors); default: the text is already segmented by spaces")
    t.add_argument("--no-progress", action="store_true")
    add_encoding_argument(t)
    common_options = t.add_argument_group("all methods")
    common_options.add_argument("--dim", type=int, help="vector size (default 100)")
    common_options.add_argument("--window", type=int,
                                help="words each side (word2vec/fasttext 5, randomly shrunk per word; glove 10)")
    common_options.add_argument("--min-count", type=int, help="drop words rarer than this (default 5)")
    common_options.add_argument("--epochs", type=int,
                                help="passes over the corpus (5; glove 50, 100 from --dim 300; nnlm 5)")
    common_options.add_argument("--alpha", type=float,
                                help="initial learning rate (word2vec/fasttext 0.025, glove 0.05, nnlm 0.5)")
    common_options.add_argument("--workers", type=int, help="threads (default 3)")
    common_options.add_argument("--seed", type=int, help="random seed (default 1)")
    w2v = t.add_argument_group("word2vec and fasttext")
    w2v.add_argument("--arch", choices=["skipgram", "cbow"], help="default cbow (word2vec.c and gensim)")
    w2v.add_argument("--loss", choices=["ns", "hs"], help="negative sampling (default) or hierarchical softmax")
    w2v.add_argument("--negative", type=int, help="negative samples per word (default 5)")
    w2v.add_argument("--sample", type=float, help="frequent-word subsampling threshold t (default 1e-3; 0: off)")
    w2v.add_argument("--min-alpha", type=float, help="final learning rate of the linear decay (default 1e-4)")
    ft = t.add_argument_group("fasttext")
    ft.add_argument("--min-n", type=int, help="shortest character n-gram (default 3)")
    ft.add_argument("--max-n", type=int, help="longest character n-gram (default 6)")
    ft.add_argument("--bucket", type=int, help="hash buckets of the n-grams (default 2000000)")
    gl = t.add_argument_group("glove")
    gl.add_argument("--x-max", type=float, help="f(x) = (x / x_max)^power below x_max, else 1 (default 100)")
    gl.add_argument("--power", type=float, help="the exponent of f (default 0.75)")
    nn = t.add_argument_group("nnlm")
    nn.add_argument("--context", type=int, help="n - 1 previous words (default 4)")
    nn.add_argument("--hidden", type=int, help="tanh hidden units (default 100)")
    nn.add_argument("--direct", action=argparse.BooleanOptionalAction, default=None,
                    help="direct connections from the word features to the output (default on)")
    nn.add_argument("--batch-size", type=int, help="windows per SGD update (default 256)")
    nn.add_argument("--decay", type=float, help="learning rate alpha / (1 + decay x updates) (default 1e-5)")
    nn.add_argument("--weight-decay", type=float, help="on the weight matrices (default 1e-4)")
    nn.add_argument("--device", help="cpu (default) or cuda")


OPTION_FLAGS = ("dim", "window", "min_count", "epochs", "alpha", "workers", "seed", "arch", "loss", "negative",
                "sample", "min_alpha", "min_n", "max_n", "bucket", "x_max", "power", "context", "hidden", "direct",
                "batch_size", "decay", "weight_decay", "device")


def cmd_vectors(args: argparse.Namespace) -> None:
    raise UserError("say what to do: `ptmzoo vectors train ...`, `ptmzoo vectors eval DIR ...` or "
                    "`ptmzoo vectors neighbors DIR WORD ...`")


def cmd_train(args: argparse.Namespace) -> None:
    from .train import train_vectors

    options = {name: getattr(args, name) for name in OPTION_FLAGS if getattr(args, name) is not None}
    vectors, report = train_vectors(args.method, args.input, args.out, lowercase=args.lowercase, segment=args.segment,
                                    overwrite=args.overwrite, progress=not args.no_progress, **options)
    settings, stats, corpus = report["settings"], report["training"], report["corpus"]
    kind = f" ({settings['arch']}, {settings['loss']})" if "arch" in settings else ""
    speed = f", {stats['words_per_s']:,} words/s" if "words_per_s" in stats else ""
    print(f"{args.method}{kind}: {len(vectors):,} words x {vectors.dim} from {corpus['words']:,} corpus words "
          f"({corpus['sentences']:,} lines); trained in {stats['seconds']:.1f} s{speed}")
    print(f"vectors -> {os.path.join(args.out, 'vectors.txt')}, {os.path.join(args.out, 'vectors.bin')}"
          + ("; n-grams -> " + os.path.join(args.out, "ngrams.npz") if vectors.ngrams is not None else ""))


def _load(path: str):
    from .keyed import WordVectors

    if not os.path.exists(path):
        raise UserError(f"vectors not found: {path} (give the --out directory of `ptmzoo vectors train` or a file)")
    return WordVectors.load(path)


def cmd_eval(args: argparse.Namespace) -> None:
    from .evaluate import evaluate_analogies, evaluate_similarity

    if not (args.analogy or args.similarity):
        raise UserError("give --analogy FILE... and/or --similarity FILE...")
    if args.restrict_vocab < 1:
        raise UserError("--restrict-vocab must be at least 1")
    vectors = _load(args.vectors)
    case_insensitive = not args.case_sensitive
    results = {"analogy": [evaluate_analogies(vectors, f, args.restrict_vocab, case_insensitive) for f in args.analogy],
               "similarity": [evaluate_similarity(vectors, f, args.restrict_vocab, case_insensitive)
                              for f in args.similarity]}
    if args.json:
        print(json.dumps(results, indent=2, ensure_ascii=False))
        return
    for r in results["analogy"]:
        print(f"analogy {os.path.basename(r['file'])}: 3CosAdd {r['3cosadd']:.4f}, 3CosMul {r['3cosmul']:.4f} "
              f"({r['answered']:,} questions; {r['skipped']:,} skipped: a word outside the vocabulary)")
    for r in results["similarity"]:
        shown = "no pair in the vocabulary" if r["spearman"] is None else \
            f"Spearman {r['spearman']:.4f}, Pearson {r['pearson']:.4f}"
        print(f"similarity {os.path.basename(r['file'])}: {shown} ({r['pairs']:,} pairs; {r['skipped']:,} skipped)")


def cmd_neighbors(args: argparse.Namespace) -> None:
    if args.topn < 1:
        raise UserError("--topn must be at least 1")
    vectors = _load(args.vectors)
    for word in args.words:
        found = vectors.most_similar(word, args.topn)
        note = "" if word in vectors else " (not in the vocabulary: from its character n-grams)"
        print(f"{word}{note}: " + ", ".join(f"{w} {score:.3f}" for w, score in found))
