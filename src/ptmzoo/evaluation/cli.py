"""The language-model options of ``ptmzoo evaluate``: ``--perplexity FILE`` and ``--fewshot FILE``."""

from __future__ import annotations

import argparse

from ..errors import UserError, require_file
from ..textio import read_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("causal language models: perplexity and zero-/few-shot classification")
    group.add_argument("--perplexity", metavar="FILE", help="text file: perplexity with a sliding window")
    group.add_argument("--stride", type=int, help="tokens between window starts (default: half the context)")
    group.add_argument("--context", type=int, help="window / prompt length in tokens (default: the model's; "
                                                   "models with a memory: the segment length, default 128)")
    group.add_argument("--mem-len", type=int, help="models with a memory (Transformer-XL): states kept per layer "
                                                   "while reading the text (default: the model's; 0: none)")
    group.add_argument("--fewshot", metavar="TEST", help="labelled file: accuracy of the most likely answer")
    group.add_argument("--train", dest="fewshot_train", metavar="FILE",
                       help="labelled file the k demonstrations are drawn from (needed with --shots > 0)")
    group.add_argument("--shots", type=int, default=0, help="demonstrations in each prompt (0: zero-shot)")
    group.add_argument("--template", default="{text}\\nAnswer:",
                       help="one example, with {column} fields; \\n is a newline (default: '{text}\\nAnswer:')")
    group.add_argument("--verbalizers", help="answer text of each label, e.g. 0=negative,1=positive "
                                             "(default: the labels themselves)")
    group.add_argument("--label-column", default="label", help="gold label (multiple choice: the right index)")
    group.add_argument("--choices-column", help="multiple choice: a JSON list of answers per row")
    group.add_argument("--normalize", action="store_true", help="score answers per token, not in total")
    group.add_argument("--max-examples", type=int, help="evaluate the first N test examples (default: all)")
    group.add_argument("--seed", type=int, default=0, help="draw of the demonstrations")


def wants_lm_evaluation(args) -> bool:
    return bool(args.perplexity or args.fewshot)


def run(args, pretrained) -> dict:
    """Metrics of ``ptmzoo evaluate MODEL --perplexity FILE`` or ``--fewshot FILE``."""
    if pretrained.tokenizer is None:
        raise UserError(f"{pretrained.path} has no tokenizer; text evaluation needs its tokenizer.json")
    if args.perplexity:
        from .perplexity import perplexity

        text = read_text(require_file(args.perplexity, "text file"))
        ids = pretrained.tokenizer.encode(text, add_special_tokens=False)
        if "mems" in pretrained.model.input_names:  # read in segments, the memory carried along
            from .perplexity import perplexity_with_memory

            segment = args.context or pretrained.meta.get("seq_len") or 128
            return perplexity_with_memory(pretrained.model, ids, segment, args.mem_len)
        if args.mem_len is not None:
            raise UserError(f"--mem-len is for models with a memory (Transformer-XL); a {pretrained.family} model "
                            "has none")
        return perplexity(pretrained.model, ids, args.context, args.stride, args.batch_size, pretrained.tokenizer)

    from ..tasks.tables import read_table
    from .fewshot import FewShotTask, fewshot_classify

    if args.shots and not args.fewshot_train:
        raise UserError("--shots needs --train FILE to draw the demonstrations from")
    verbalizers = None
    if args.verbalizers:
        pairs = [item.split("=", 1) for item in args.verbalizers.split(",")]
        if any(len(pair) != 2 for pair in pairs):
            raise UserError("--verbalizers must look like 0=negative,1=positive")
        verbalizers = {label.strip(): word.strip() for label, word in pairs}
    test = read_table(args.fewshot, args.format, args.columns)[: args.max_examples]
    train = read_table(args.fewshot_train, args.format, args.columns) if args.fewshot_train else []
    task = FewShotTask(template=args.template.replace("\\n", "\n"), label_column=args.label_column,
                       verbalizers=verbalizers, choices_column=args.choices_column)
    result = fewshot_classify(pretrained.model, pretrained.tokenizer, task, train, test, args.shots, args.seed,
                              args.normalize, args.batch_size, args.context)
    return {key: result[key] for key in ("accuracy", "examples", "shots")}
