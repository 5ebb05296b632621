"""Compression side by side: every ptmzoo compression method on one task, one table.

``--stage train`` runs the whole pipeline with ``ptmzoo`` commands (each printed, each skipped when
its output is already there): a tokenizer, shards and a ``bert-mini`` pre-trained briefly on
unlabelled text, the teacher fine-tuned on the task, then the students and compressed models --
a 2-layer student fine-tuned alone (no teacher), ``kd``, ``distilbert``, ``tinybert``, ``pkd``,
``minilm``, ``bilstm``, ``theseus``, an ensemble of two teachers, ``mobilebert``'s progressive transfer; ``dynamic-int8``, ``weight-int8``
and ``qat``; magnitude pruning (one-shot and gradual), head pruning, every other layer removed from
the teacher and from a teacher trained with LayerDrop(0.2).

``--stage measure`` loads every model and prints the table: parameters (non-zero ones for
magnitude pruning), file size, CPU latency at batch 1 and 32 (test sentences, padded as the task
collates them; all models in one process, one thread count, rounds that rotate the order of the
models; the median over rounds), dev and test accuracy and retention (test accuracy / the
teacher's). ``torch.ao``'s dynamic quantization of the teacher is measured in the same run as the
reference for ``dynamic-int8``. The machine load is printed with the timings. GPU latency is
measured when CUDA is available (``--device cuda``).

``--stage decode`` times batch-1 greedy decoding of a ``gpt2-small``-sized decoder (random weights,
an 8,000-token vocabulary: speed only) in fp32, weight-int8 and dynamic-int8, side by side.

    .venv/bin/python bench/compress.py --task sst2 --stage train      # long on a busy 2-core CPU
    .venv/bin/python bench/compress.py --task sst2 --stage measure
    .venv/bin/python bench/compress.py --stage decode
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from cpu_pretrain import load_average

ROOT = os.path.dirname(HERE)
DATA = os.path.normpath(os.path.join(ROOT, "..", "shared", "data"))

TASKS = {
    "sst2": {
        "corpus": ["en/corpus/wiki_demo.txt", "en/corpus/wikitext2.valid.txt", "en/corpus/wikitext2.test.txt",
                   "en/corpus/c4_demo.jsonl", "en/corpus/lee_background.cor"],
        "files": ("en/sst2/train.tsv", "en/sst2/dev.tsv", "en/sst2/test.tsv"), "text": "sentence", "label_first": False,
        "tokenizer": ["--kind", "wordpiece", "--vocab-size", "8000"], "teacher_examples": 8000,
        "pos_lexicon": "en/conll2003/train.txt",
    },
    "chnsenticorp": {
        "corpus": ["zh/corpus/clue_small_sampled.txt"],
        "files": ("zh/chnsenticorp/train.tsv", "zh/chnsenticorp/dev.tsv", "zh/chnsenticorp/test.tsv"),
        "text": "text_a", "label_first": True,
        "tokenizer": ["--kind", "char", "--vocab-size", "6000"], "teacher_examples": 6000, "pos_lexicon": None,
    },
}


# ---------------------------------------------------------------------------------- train
class Pipeline:
    def __init__(self, args):
        self.args = args
        self.task = TASKS[args.task]
        self.out = os.path.join(args.out, args.task)
        os.makedirs(self.out, exist_ok=True)
        train, dev, test = (os.path.join(args.data, f) for f in self.task["files"])
        self.args.out = os.path.abspath(args.out)
        self.train_file, self.test_file = train, test
        self.dev_file = os.path.join(self.out, "dev500.tsv")  # model selection on 500 dev examples
        if not os.path.exists(self.dev_file):
            with open(dev, encoding="utf-8") as src, open(self.dev_file, "w", encoding="utf-8") as dst:
                dst.writelines(line for _, line in zip(range(501), src))
        self.log = os.path.join(self.out, "commands.txt")

    def path(self, *parts) -> str:
        return os.path.join(self.out, *parts)

    def ptmzoo(self, name: str, done: str, *argv: str) -> None:
        """Run ``ptmzoo ARGV`` unless ``done`` exists; the command and its time go to commands.txt."""
        if os.path.exists(done):
            print(f"[skip] {name}: {done} exists", flush=True)
            return
        if self.args.only and name not in self.args.only:
            print(f"[not run] {name}: not in --only", flush=True)
            return
        command = [sys.executable, "-m", "ptmzoo", *argv]
        shown = "ptmzoo " + " ".join(shlex.quote(a) for a in argv)
        print(f"[run] {name}: {shown}", flush=True)
        start = time.time()
        env = {**os.environ, "OMP_NUM_THREADS": str(self.args.threads)}
        with open(self.path(f"{name}.log"), "w") as log:
            code = subprocess.call(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.out)
        minutes = (time.time() - start) / 60
        with open(self.log, "a") as fh:
            fh.write(f"# {name}: exit {code}, {minutes:.1f} min, load {load_average()}\n{shown}\n")
        if code != 0:
            raise SystemExit(f"{name} failed (exit {code}); see {self.path(name + '.log')}")

    def task_flags(self, examples: int, epochs: float, lr: float, test: bool = True) -> list[str]:
        flags = ["--train", self.train_file, "--dev", self.dev_file, "--text-column", self.task["text"],
                 "--max-length", str(self.args.max_length), "--max-train-examples", str(examples),
                 "--epochs", f"{epochs:g}", "--batch-size", "32", "--lr", f"{lr:g}", "--seed", "0", "--no-progress"]
        return flags + (["--test", self.test_file] if test else [])

    def run(self) -> None:
        a, t = self.args, self.task
        corpus = [os.path.join(a.data, c) for c in t["corpus"]]
        texts = self.path("train_text.txt")  # the unlabelled text of the task's training split
        if not os.path.exists(texts):
            column = 1 if t["label_first"] else 0
            with open(self.train_file, encoding="utf-8") as src, open(texts, "w", encoding="utf-8") as dst:
                next(src)
                dst.writelines(line.rstrip("\n").split("\t")[column] + "\n" for line in src)
        self.ptmzoo("tokenizer", self.path("tokenizer"), "tokenizer", "train", "--input", *corpus, texts, "--docs",
                    "line", *t["tokenizer"], "--out", "tokenizer")
        self.ptmzoo("shards", self.path("shards"), "prepare", "--input", *corpus, texts, "--docs", "line",
                    "--tokenizer", "tokenizer", "--out", "shards", "--workers", "1", "--no-progress")
        self.ptmzoo("pretrained", self.path("pretrained", "final"), "pretrain", "--preset", "bert-mini", "--data",
                    "shards", "--out", "pretrained", "--objectives", "mlm", "--steps", "3000", "--batch-size", "32",
                    "--lr", "1e-3", "--seq-len", "64", "--no-progress", "train.warmup_steps=50",
                    f"train.max_minutes={a.pretrain_minutes:g}", "train.eval_every=200", "train.save_every=400",
                    "train.log_every=20")
        teacher_flags = self.task_flags(t["teacher_examples"], 2, 2e-4)
        # the LayerDrop comparison: a teacher and a LayerDrop(0.2) teacher on the same budget
        # (--layerdrop-examples/--layerdrop-epochs; by default the teacher's own budget, so the teacher is the control)
        reduced = a.layerdrop_examples is not None or a.layerdrop_epochs is not None
        ld_flags = self.task_flags(a.layerdrop_examples or t["teacher_examples"], a.layerdrop_epochs or 2, 2e-4)
        self.ptmzoo("teacher", self.path("teacher", "metrics.json"), "finetune", "--model", "pretrained/final",
                    *teacher_flags, "--out", "teacher")
        teacher = "teacher/best"
        flags = self.task_flags(a.examples, a.epochs, 2e-4)
        self.ptmzoo("student_init", self.path("student_init"), "init-student", teacher, "student_init",
                    "--num-layers", "2")
        self.ptmzoo("student_alone", self.path("student_alone", "metrics.json"), "finetune", "--model",
                    "student_init", *flags, "--out", "student_alone")
        for method, extra in (("kd", []), ("distilbert", []), ("pkd", []), ("tinybert", []), ("minilm", []),
                              ("theseus", ["--student-layers", "2", "--replace-schedule", "linear",
                                           "--replace-rate", "0.3"])):
            self.ptmzoo(method, self.path(method, "metrics.json"), "distill", "--teacher", teacher, "--method",
                        method, *extra, *flags, "--out", method)
        bilstm = self.task_flags(a.examples, a.epochs, 1e-3)
        self.ptmzoo("bilstm", self.path("bilstm", "metrics.json"), "distill", "--teacher", teacher, "--method",
                    "bilstm", *bilstm, "--out", "bilstm")
        # one-shot compression of the teacher
        for method in ("dynamic-int8", "weight-int8"):
            self.ptmzoo(method, self.path(method, "ptmzoo.json"), "quantize", teacher, "--method", method,
                        "--out", method)
        self.ptmzoo("magnitude50", self.path("magnitude50", "ptmzoo.json"), "prune", teacher, "--method",
                    "magnitude", "--sparsity", "0.5", "--out", "magnitude50")
        self.ptmzoo("heads50", self.path("heads50", "ptmzoo.json"), "prune", teacher, "--method", "heads",
                    "--fraction", "0.5", "--file", self.train_file, "--max-examples", "1000", "--out", "heads50")
        self.ptmzoo("teacher_half", self.path("teacher_half", "ptmzoo.json"), "prune", teacher, "--method", "layers",
                    "--keep-layers", "every-other", "--out", "teacher_half")
        # fine-tuning from the teacher: QAT and gradual magnitude pruning, one epoch each
        self.ptmzoo("qat", self.path("qat", "metrics.json"), "quantize", teacher, "--method", "qat", *flags,
                    "--out", "qat")
        self.ptmzoo("magnitude50_gradual", self.path("magnitude50_gradual", "metrics.json"), "prune", teacher,
                    "--method", "magnitude", "--sparsity", "0.5", *flags, "--out", "magnitude50_gradual")
        # LayerDrop: the teacher's run with train.layerdrop=0.2, then every other layer removed
        if reduced:  # the control: no LayerDrop, the same reduced budget
            self.ptmzoo("teacher_small", self.path("teacher_small", "metrics.json"), "finetune", "--model",
                        "pretrained/final", *ld_flags, "--out", "teacher_small")
            self.ptmzoo("teacher_small_half", self.path("teacher_small_half", "ptmzoo.json"), "prune",
                        "teacher_small/best", "--method", "layers", "--keep-layers", "every-other", "--out",
                        "teacher_small_half")
        self.ptmzoo("teacher_layerdrop", self.path("teacher_layerdrop", "metrics.json"), "finetune", "--model",
                    "pretrained/final", *ld_flags, "--out", "teacher_layerdrop", "train.layerdrop=0.2")
        self.ptmzoo("teacher_layerdrop_half", self.path("teacher_layerdrop_half", "ptmzoo.json"), "prune",
                    "teacher_layerdrop/best", "--method", "layers", "--keep-layers", "every-other", "--out",
                    "teacher_layerdrop_half")
        self.ptmzoo("kd_ensemble", self.path("kd_ensemble", "metrics.json"), "distill", "--teacher", teacher,
                    "--teacher", "teacher_layerdrop/best", "--method", "kd", *flags, "--out", "kd_ensemble")
        self.ptmzoo("mobilebert", self.path("mobilebert", "metrics.json"), "distill", "--teacher", teacher,
                    "--method", "mobilebert", *flags, "--out", "mobilebert")


# ---------------------------------------------------------------------------------- measure
ROWS = [  # (name, directory, what)
    ("teacher", "teacher/best", "bert-mini 4 x 256, fine-tuned"),
    ("student alone", "student_alone/best", "2 layers (teacher's 0, 2), fine-tuned without teacher"),
    ("kd", "kd/best", "2 layers, soft targets T=2, alpha 0.5"),
    ("kd, 2-teacher ensemble", "kd_ensemble/best", "teacher + LayerDrop teacher"),
    ("distilbert", "distilbert/best", "2 layers, kd + L_cos"),
    ("pkd (skip)", "pkd/best", "2 layers, kd + patient loss, beta 100"),
    ("tinybert", "tinybert/best", "2 layers, intermediate then prediction layer"),
    ("minilm", "minilm/best", "2 layers, relations then fine-tuning"),
    ("mobilebert (progressive)", "mobilebert/best", "2 layers, one stage per layer, then kd"),
    ("theseus", "theseus/best", "2 modules, linear rate from 0.3, then successor"),
    ("bilstm", "bilstm/best", "BiLSTM 300/150x2/200, logit MSE"),
    ("dynamic-int8", "dynamic-int8", "ptmzoo int8 Linear, per-row weight scales"),
    ("torch.ao dynamic", None, "quantize_dynamic(teacher, {Linear}, qint8)"),
    ("weight-int8", "weight-int8", "int8 weights, bf16 activations"),
    ("qat (Q8BERT)", "qat/best", "1 epoch fake-quant from the teacher, int8"),
    ("magnitude 50%", "magnitude50", "one-shot, global, no fine-tuning"),
    ("magnitude 50%, gradual", "magnitude50_gradual/best", "cubic schedule over 1 epoch from the teacher"),
    ("heads -50%", "heads50", "Michel et al. importance, no fine-tuning"),
    ("teacher, every other layer", "teacher_half", "layers 0, 2 of the teacher, no fine-tuning"),
    ("teacher, reduced budget", "teacher_small/best", "as the teacher on --layerdrop-examples/-epochs"),
    ("reduced teacher, every other layer", "teacher_small_half", "layers 0, 2, no fine-tuning"),
    ("LayerDrop(0.2) teacher", "teacher_layerdrop/best", "trained with train.layerdrop=0.2"),
    ("LayerDrop teacher, every other layer", "teacher_layerdrop_half", "layers 0, 2, no fine-tuning"),
]


def measure(args) -> None:
    import numpy as np
    import torch

    import ptmzoo
    from ptmzoo.finetune.run import task_of

    torch.set_num_threads(args.threads)
    out = os.path.join(args.out, args.task)
    device = torch.device(args.device)
    teacher = ptmzoo.load(os.path.join(out, "teacher/best"))
    task = task_of(teacher)
    rows_test = task.read(test_file(args), task.options)
    rows_dev = task.read(os.path.join(out, "dev500.tsv"), task.options)
    test, dev = task.encode(rows_test, "test"), task.encode(rows_dev, "dev")
    models = {}
    for name, directory, what in ROWS:
        if directory is None:
            with torch.no_grad():
                reference = torch.ao.quantization.quantize_dynamic(copy.deepcopy(teacher.model).eval(),
                                                                   {torch.nn.Linear}, dtype=torch.qint8)
            models[name] = (reference, None, what)
            continue
        path = os.path.join(out, directory)
        if not os.path.exists(path):
            print(f"(missing: {name} -- {path})")
            continue
        models[name] = (ptmzoo.load(path, device=device).model, path, what)
    results = {}
    for name, (model, path, what) in models.items():
        # weights: parameters, and the int8 weight buffers of quantized layers
        tensors = list(model.parameters()) + [b for n, b in model.named_buffers() if n.endswith((".weight", ".qweight"))]
        total = sum(t.numel() for t in tensors)
        nonzero = sum(int((t != 0).sum()) for t in tensors)
        if path is None:  # torch.ao keeps its int8 weights in packed objects: the teacher's architecture
            total = nonzero = results["teacher"]["parameters"]
            import io

            buffer = io.BytesIO()  # its state dict as torch.save writes it (a pickle: what torch.ao offers)
            torch.save(model.state_dict(), buffer)
            size = buffer.tell()
        else:
            size = os.path.getsize(os.path.join(path, "model.safetensors"))
        metrics = {}
        for split, rows, samples in (("dev", rows_dev, dev), ("test", rows_test, test)):
            outputs = task.predict(model, samples, 64, device)
            metrics[split] = task.evaluate(rows, samples, outputs)["accuracy"]
        results[name] = {"what": what, "parameters": total, "nonzero": nonzero, "bytes": size, **metrics}
    # latency, side by side: batch 1 (a median-length test sentence) and batch 32 (the first 32)
    lengths = [len(s["input_ids"]) for s in test]
    one = [test[int(np.argsort(lengths)[len(lengths) // 2])]]
    batches = {"b1": task.collate(one), "b32": task.collate(test[:32])}
    names = list(models)
    timings = {n: {"b1": [], "b32": []} for n in names}
    load_before = load_average()
    with torch.no_grad():
        for name in names:  # warm-up
            for b in batches.values():
                models[name][0](**{k: v.to(device) for k, v in models[name][0].select_inputs(b).items()})
        for r in range(args.rounds):
            order = names[r % len(names):] + names[: r % len(names)]
            for name in order:
                model = models[name][0]
                for key, reps in (("b1", 10), ("b32", 2)):
                    inputs = {k: v.to(device) for k, v in model.select_inputs(batches[key]).items()}
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    start = time.perf_counter()
                    for _ in range(reps):
                        model(**inputs)
                    if device.type == "cuda":
                        torch.cuda.synchronize()
                    timings[name][key].append((time.perf_counter() - start) / reps * 1000)
    for name in names:
        for key in ("b1", "b32"):
            results[name][f"{key}_ms"] = statistics.median(timings[name][key])
    load_after = load_average()
    base = results["teacher"]
    header = (f"{args.task}: test = {os.path.relpath(test_file(args), args.data)} ({len(test)} examples), dev = "
              f"500 examples; {device.type} latency, {args.threads} thread(s), median of {args.rounds} rounds "
              f"(batch 1: {len(one[0]['input_ids'])} tokens; batch 32: padded to {batches['b32']['input_ids'].shape[1]}); "
              f"load average before {load_before}, after {load_after}")
    lines = [header, "",
             "| method | parameters | file | CPU ms b1 | CPU ms b32 | speed-up b32 | dev acc | test acc | retention | notes |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name in names:
        r = results[name]
        params = f"{r['parameters'] / 1e6:.2f}M" + (f" ({r['nonzero'] / 1e6:.2f}M non-zero)"
                                                   if r["nonzero"] < 0.9 * r["parameters"] else "")
        lines.append(f"| {name} | {params} | {r['bytes'] / 2**20:.1f} MB | {r['b1_ms']:.2f} | {r['b32_ms']:.1f} | "
                     f"{base['b32_ms'] / r['b32_ms']:.2f}x | {r['dev']:.3f} | {r['test']:.3f} | "
                     f"{100 * r['test'] / base['test']:.1f}% | {r['what']} |")
    text = "\n".join(lines)
    print(text)
    with open(os.path.join(out, "table.md"), "w") as fh:
        fh.write(text + "\n")
    with open(os.path.join(out, "measure.json"), "w") as fh:
        json.dump({"header": header, "results": results}, fh, indent=1)


def test_file(args) -> str:
    return os.path.join(args.data, TASKS[args.task]["files"][2])


# ---------------------------------------------------------------------------------- decode
def decode(args) -> None:
    import torch

    from ptmzoo.catalog import build_model
    from ptmzoo.compress.quantize import quantize_model
    from ptmzoo.generation import generate
    from ptmzoo.objectives.clm import LMHead
    from ptmzoo.presets import get_preset

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = {**get_preset("gpt2-small").model, "vocab_size": 8000}
    base = build_model("gpt2", config)
    base.add_head("clm", LMHead)
    base.eval()
    variants = {"fp32": base}
    for method in ("weight-int8", "dynamic-int8"):
        model = copy.deepcopy(base)
        quantize_model(model, method)
        variants[method] = model.eval()
    # torch.ao's dynamic int8 of the same Linear layers (the tied LM head stays fp32 here too)
    linears = {n for n, m in base.named_modules() if isinstance(m, torch.nn.Linear) and not n.startswith("heads")}
    variants["torch.ao dynamic"] = torch.ao.quantization.quantize_dynamic(copy.deepcopy(base), linears,
                                                                         dtype=torch.qint8).eval()
    prompt = [list(range(10, 26))]
    tokens = args.new_tokens
    times = {name: [] for name in variants}
    for model in variants.values():
        generate(model, prompt, max_new_tokens=4, ignore_eos=True, eos_token_id=0)
    load_before = load_average()
    outputs = {}
    for r in range(args.rounds):
        names = list(variants)
        for name in names[r % len(names):] + names[: r % len(names)]:
            start = time.perf_counter()
            result = generate(variants[name], prompt, max_new_tokens=tokens, ignore_eos=True, eos_token_id=0)
            times[name].append(time.perf_counter() - start)
            outputs[name] = result.token_ids[0]
    params = sum(p.numel() for p in base.parameters())
    lines = [(f"batch-1 greedy decoding, gpt2-small layers (12 x 768) with an 8,000-token vocabulary, random weights "
             f"({params / 1e6:.1f}M parameters; the tied LM head stays fp32), {tokens} new tokens after 16, "
             f"{args.threads} thread(s), median of {args.rounds} rounds; load average before {load_before}, "
             f"after {load_average()}"), "",
             "| weights | tokens/s | speed-up vs fp32 | vs torch.ao dynamic | same tokens as fp32 |", "|---|---|---|---|---|"]
    for name in variants:
        median = statistics.median(times[name])
        fp32 = statistics.median(times["fp32"])
        same = sum(a == b for a, b in zip(outputs[name], outputs["fp32"])) / len(outputs["fp32"])
        reference = statistics.median(times["torch.ao dynamic"])
        lines.append(f"| {name} | {tokens / median:.1f} | {fp32 / median:.2f}x | {reference / median:.2f}x | {same:.0%} |")
    text = "\n".join(lines)
    print(text)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "decode.md"), "w") as fh:
        fh.write(text + "\n")
    with open(os.path.join(args.out, "decode.json"), "w") as fh:
        json.dump({"header": lines[0], "seconds": times}, fh, indent=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=list(TASKS), default="sst2")
    parser.add_argument("--stage", choices=["train", "measure", "decode"], required=True)
    parser.add_argument("--out", default=os.path.join(HERE, "results", "compress"))
    parser.add_argument("--data", default=DATA, help="the shared data folder (../shared/data)")
    parser.add_argument("--threads", type=int, default=1, help="OMP/torch threads of every run and timing")
    parser.add_argument("--examples", type=int, default=4000, help="training examples of the compression runs")
    parser.add_argument("--epochs", type=float, default=1.0, help="epochs of each compression run (and stage)")
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--pretrain-minutes", type=float, default=22.0)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--only", type=lambda v: set(v.split(",")), default=None,
                        help="train: run only these steps (comma-separated names, e.g. tinybert,minilm); the others "
                             "must exist or are left out")
    parser.add_argument("--layerdrop-examples", type=int, default=None,
                        help="train the LayerDrop teacher (and a control teacher without LayerDrop) on this many "
                             "examples instead of the teacher's budget")
    parser.add_argument("--layerdrop-epochs", type=float, default=None)
    args = parser.parse_args()
    if args.stage == "train":
        Pipeline(args).run()
    elif args.stage == "measure":
        measure(args)
    else:
        decode(args)


if __name__ == "__main__":
    main()
