"""Static word vectors: ptmzoo against gensim, side by side in one process.

Same corpus file (streamed by both: gensim's ``LineSentence``, ptmzoo's ``LineCorpus``), same
settings (dimension, window, min-count, negative samples, subsampling, epochs, learning rates,
seed) and the same number of worker threads. For each configuration and seed the two
implementations run one after the other (the order flips with the seed); the training call alone
is timed (the vocabulary pass is reported apart). Both sets of vectors are scored with gensim's
own functions -- ``evaluate_word_pairs`` (WordSim-353, SimLex-999: Spearman) and
``evaluate_word_analogies`` (Google analogies, 3CosAdd, the 300,000 most frequent words) -- after
ptmzoo's vectors are loaded from the ``vectors.bin`` it wrote (gensim's reader); ptmzoo's own
evaluation is checked to give the same numbers. GloVe has no reference implementation here (the
Stanford tool is not installable from a package registry), so it gets a ptmzoo row only.

    .venv/bin/python bench/vectors.py                      # sg-ns, cbow-ns, sg-hs, fasttext + glove, 3 seeds
    .venv/bin/python bench/vectors.py --configs sg-ns --seeds 1   # quick look
"""

from __future__ import annotations

import argparse
import gzip
import json
import logging
import os
import platform
import re
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
from cpu_pretrain import CpuMonitor, cpu_model, load_average  # noqa: E402

SHARED = os.path.join(os.path.dirname(ROOT), "shared", "data")
CORPORA = ["en/corpus/wikitext2.valid.txt", "en/corpus/wikitext2.test.txt", "en/corpus/kjv.txt",
           "en/corpus/wiki_demo.txt", "en/corpus/tinyshakespeare.txt", "en/corpus/lee_background.cor",
           "en/corpus/c4_demo.jsonl", "en/multi30k/train.en.gz"]
EVAL = os.path.join(SHARED, "en", "wordvec_eval")
CONFIGS = {  # name: (method, skip-gram, hierarchical softmax)
    "sg-ns": ("word2vec", True, False),
    "cbow-ns": ("word2vec", False, False),
    "sg-hs": ("word2vec", True, True),
    "fasttext": ("fasttext", True, False),
}
WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


def build_corpus(out: str) -> tuple[int, int]:
    """The English corpora of ../shared/data, lower-cased and cut into words (punctuation
    dropped), one line per line: the file both implementations read."""
    lines = words = 0
    with open(out, "w", encoding="utf-8") as fh:
        for relative in CORPORA:
            path = os.path.join(SHARED, relative)
            opener = gzip.open if path.endswith(".gz") else open
            with opener(path, "rt", encoding="utf-8") as source:
                for line in source:
                    if relative.endswith(".jsonl"):
                        line = json.loads(line)["text"]
                    tokens = WORD.findall(line.lower())
                    if tokens:
                        fh.write(" ".join(tokens) + "\n")
                        lines += 1
                        words += len(tokens)
    return lines, words


def scores(kv) -> dict:
    """gensim's own evaluation functions."""
    ws = kv.evaluate_word_pairs(os.path.join(EVAL, "wordsim353.tsv"))[1][0]
    sl = kv.evaluate_word_pairs(os.path.join(EVAL, "simlex999.txt"))[1][0]
    analogy, _ = kv.evaluate_word_analogies(os.path.join(EVAL, "questions-words.txt"))
    return {"wordsim353": float(ws), "simlex999": float(sl), "analogy": float(analogy)}


def run_gensim(config: str, corpus: str, args, seed: int) -> dict:
    from gensim.models import FastText, Word2Vec
    from gensim.models.word2vec import LineSentence

    method, sg, hs = CONFIGS[config]
    settings = dict(vector_size=args.dim, window=args.window, min_count=args.min_count, workers=args.workers,
                    sg=int(sg), hs=int(hs), negative=0 if hs else args.negative, sample=args.sample, seed=seed,
                    epochs=args.epochs, alpha=args.alpha, min_alpha=args.min_alpha)
    if method == "fasttext":
        model = FastText(min_n=3, max_n=6, bucket=args.bucket, **settings)
    else:
        model = Word2Vec(**settings)
    started = time.perf_counter()
    model.build_vocab(corpus_iterable=LineSentence(corpus))
    vocab_seconds = time.perf_counter() - started
    started = time.perf_counter()
    model.train(corpus_iterable=LineSentence(corpus), total_examples=model.corpus_count, epochs=args.epochs)
    seconds = time.perf_counter() - started
    return {"vocab_seconds": vocab_seconds, "seconds": seconds, "words": len(model.wv),
            "corpus_words": model.corpus_total_words * args.epochs, **scores(model.wv)}


def run_ptmzoo(config: str, corpus: str, args, seed: int, out: str) -> dict:
    from gensim.models import KeyedVectors

    from ptmzoo.vectors import evaluate
    from ptmzoo.vectors.corpus import LineCorpus, Vocabulary
    from ptmzoo.vectors.keyed import WordVectors
    from ptmzoo.vectors.train import build_options, method_classes

    method, sg, hs = CONFIGS[config]
    options = dict(arch="skipgram" if sg else "cbow", loss="hs" if hs else "ns", dim=args.dim, window=args.window,
                   min_count=args.min_count, negative=args.negative, sample=args.sample, epochs=args.epochs,
                   alpha=args.alpha, min_alpha=args.min_alpha, workers=args.workers, seed=seed)
    if method == "fasttext":
        options["bucket"] = args.bucket
    lines = LineCorpus(corpus)
    started = time.perf_counter()
    vocab = Vocabulary.build(lines, args.min_count)
    vocab_seconds = time.perf_counter() - started
    model = method_classes(method)[0](vocab, build_options(method, options))
    stats = model.train(lines, progress=False)
    vectors = WordVectors(model.words, model.vectors())
    vectors.save(out, {"method": method, "settings": model.settings()}, overwrite=True)
    kv = KeyedVectors.load_word2vec_format(os.path.join(out, "vectors.bin"), binary=True)  # gensim's reader
    result = {"vocab_seconds": vocab_seconds, "seconds": stats["seconds"], "words": len(vocab),
              "corpus_words": stats["corpus_words"], **scores(kv)}
    # ptmzoo's own evaluation of the same vectors gives gensim's numbers
    own = {"wordsim353": evaluate.evaluate_similarity(vectors, os.path.join(EVAL, "wordsim353.tsv"))["spearman"],
           "analogy": evaluate.evaluate_analogies(vectors, os.path.join(EVAL, "questions-words.txt"))["3cosadd"]}
    result["own_evaluation_matches"] = all(abs(own[k] - result[k]) < 1e-6 for k in own)
    result["analogy_3cosmul"] = evaluate.evaluate_analogies(vectors, os.path.join(EVAL, "questions-words.txt"))["3cosmul"]
    return result


def run_glove(corpus: str, args, out: str) -> dict:
    from gensim.models import KeyedVectors

    from ptmzoo.vectors.train import train_vectors

    started = time.perf_counter()
    vectors, report = train_vectors("glove", corpus, out, overwrite=True, progress=False, dim=args.dim,
                                    window=args.glove_window, min_count=args.min_count, epochs=args.glove_epochs,
                                    x_max=args.glove_x_max, workers=args.workers, seed=1)
    kv = KeyedVectors.load_word2vec_format(os.path.join(out, "vectors.bin"), binary=True)
    return {"seconds": time.perf_counter() - started, "count_seconds": report["training"]["count_seconds"],
            "cooccurrences": report["training"]["cooccurrences"], "words": len(vectors), **scores(kv)}


def mean(values):
    return statistics.fmean(values) if values else float("nan")


def spread(values):
    return statistics.stdev(values) if len(values) > 1 else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated: " + ", ".join(CONFIGS))
    parser.add_argument("--seeds", type=int, default=3, help="runs per configuration and implementation")
    parser.add_argument("--workers", type=int, default=os.cpu_count(), help="threads, both implementations")
    parser.add_argument("--dim", type=int, default=100)
    parser.add_argument("--window", type=int, default=5)
    parser.add_argument("--min-count", type=int, default=5)
    parser.add_argument("--negative", type=int, default=5)
    parser.add_argument("--sample", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--alpha", type=float, default=0.025)
    parser.add_argument("--min-alpha", type=float, default=1e-4)
    parser.add_argument("--bucket", type=int, default=2_000_000, help="FastText hash buckets")
    parser.add_argument("--glove", action=argparse.BooleanOptionalAction, default=True, help="a ptmzoo GloVe row")
    parser.add_argument("--glove-epochs", type=int, default=25)
    parser.add_argument("--glove-window", type=int, default=10)
    parser.add_argument("--glove-x-max", type=float, default=10.0, help="10 for small corpora (GloVe's demo.sh)")
    parser.add_argument("--json", default=os.path.join(HERE, "results", "vectors.json"))
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # gensim's progress lines
    if not os.path.isdir(SHARED):
        sys.exit(f"shared data not found: {SHARED}")
    import gensim
    import numba

    work = os.path.join(HERE, "results", "vectors")
    os.makedirs(work, exist_ok=True)
    corpus = os.path.join(work, "corpus.txt")
    lines, words = build_corpus(corpus)
    print(f"gensim {gensim.__version__}, numba {numba.__version__}, Python {platform.python_version()}, "
          f"{cpu_model()}, {os.cpu_count()} CPUs, {args.workers} worker threads each")
    print(f"corpus: {words:,} words in {lines:,} lines ({len(CORPORA)} files of ../shared/data, lower-cased); "
          f"dim {args.dim}, window {args.window}, min-count {args.min_count}, negative {args.negative}, "
          f"sample {args.sample}, epochs {args.epochs}, alpha {args.alpha} -> {args.min_alpha}; "
          f"load average before: {load_average()}")
    from ptmzoo.vectors.corpus import LineCorpus, Vocabulary
    from ptmzoo.vectors.word2vec import Word2Vec, Word2VecOptions

    # compile the kernels (cached on disk) before anything is timed
    warm = os.path.join(work, "warm.txt")
    with open(warm, "w") as fh:
        fh.write("a b c d e f g h\n" * 20)
    for hs in (False, True):
        small = Vocabulary.build(LineCorpus(warm), 1)
        Word2Vec(small, Word2VecOptions(loss="hs" if hs else "ns", dim=8, workers=1)).train(LineCorpus(warm), False)

    monitor = CpuMonitor()
    results: dict[str, dict[str, list[dict]]] = {}
    for config in [c.strip() for c in args.configs.split(",") if c.strip()]:
        if config not in CONFIGS:
            sys.exit(f"unknown config {config!r} (known: {', '.join(CONFIGS)})")
        results[config] = {"gensim": [], "ptmzoo": []}
        for seed in range(1, args.seeds + 1):
            order = ["gensim", "ptmzoo"] if seed % 2 else ["ptmzoo", "gensim"]
            for impl in order:
                monitor.start()
                run = (run_gensim(config, corpus, args, seed) if impl == "gensim"
                       else run_ptmzoo(config, corpus, args, seed, os.path.join(work, config)))
                run["others_cpu"] = monitor.others()
                results[config][impl].append(run)
                print(f"  {config:8s} seed {seed} {impl:6s}: {run['seconds']:7.1f} s "
                      f"({run['corpus_words'] / run['seconds']:,.0f} words/s), WS353 {run['wordsim353']:.3f}, "
                      f"SimLex {run['simlex999']:.3f}, analogy {100 * run['analogy']:.1f}%"
                      f" (others' CPU {100 * (run['others_cpu'] or 0):.0f}%)", flush=True)
    glove = None
    if args.glove:
        monitor.start()
        glove = run_glove(corpus, args, os.path.join(work, "glove"))
        glove["others_cpu"] = monitor.others()

    header = (f"{'config':8s} {'impl':6s} {'train s':>8s} {'words/s':>9s} {'time':>6s} {'WS353 rho':>13s} "
              f"{'SimLex rho':>13s} {'analogy %':>11s} {'others%':>7s}")
    print("\n" + header + "\n" + "-" * len(header))
    for config, impls in results.items():
        base = mean([r["seconds"] for r in impls["gensim"]])
        for impl, runs in impls.items():
            secs = [r["seconds"] for r in runs]
            wps = mean([r["corpus_words"] / r["seconds"] for r in runs])
            cols = [f"{mean([r[k] for r in runs]):.3f}±{spread([r[k] for r in runs]):.3f}"
                    for k in ("wordsim353", "simlex999")]
            analogy = [100 * r["analogy"] for r in runs]
            others = max(100 * (r["others_cpu"] or 0) for r in runs)
            print(f"{config:8s} {impl:6s} {mean(secs):8.1f} {wps:9,.0f} {mean(secs) / base:5.2f}x {cols[0]:>13s} "
                  f"{cols[1]:>13s} {mean(analogy):5.1f}±{spread(analogy):4.1f} {others:6.0f}")
        deltas = {k: mean([r[k] for r in impls["ptmzoo"]]) - mean([r[k] for r in impls["gensim"]])
                  for k in ("wordsim353", "simlex999", "analogy")}
        print(f"{'':8s} {'delta':6s} {'':8s} {'':9s} {'':6s} {deltas['wordsim353']:+13.3f} "
              f"{deltas['simlex999']:+13.3f} {100 * deltas['analogy']:+11.1f}")
    if glove:
        print(f"{'glove':8s} {'ptmzoo':6s} {glove['seconds']:8.1f} {'':9s} {'':6s} {glove['wordsim353']:13.3f} "
              f"{glove['simlex999']:13.3f} {100 * glove['analogy']:11.1f} {100 * (glove['others_cpu'] or 0):6.0f}")
    own_ok = all(r["own_evaluation_matches"] for impls in results.values() for r in impls["ptmzoo"])
    print(f"\nptmzoo's own evaluation = gensim's on the same vectors: {own_ok}; load average after: {load_average()}")
    os.makedirs(os.path.dirname(args.json), exist_ok=True)
    with open(args.json, "w") as fh:
        json.dump({"args": vars(args), "corpus_words": words, "results": results, "glove": glove}, fh, indent=2)
    print(f"results -> {args.json}")


if __name__ == "__main__":
    main()
