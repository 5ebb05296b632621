"""The verb table, the registries and ``--help`` agree: every verb is listed and runs its help;
every task option and strategy setting is a flag (or says it is not) whose default the help
shows; the --task choices are the task registry, --objectives lists the objectives, convert the
families it converts; a flag of another task is refused with one line."""

import argparse
import dataclasses
import typing

import pytest

from ptmzoo.catalog import FAMILIES
from ptmzoo.cli import VERBS, build_parser, main
from ptmzoo.config import Config
from ptmzoo.config_flags import HelpFormatter, field_default, flag_of, shown_default
from ptmzoo.errors import UserError
from ptmzoo.finetune.flags import strategy_settings, task_option_values
from ptmzoo.finetune.run import FinetuneConfig
from ptmzoo.finetune.strategies import StrategyConfig
from ptmzoo.objectives import OBJECTIVES
from ptmzoo.tasks import TASKS, QATask, TaggingTask, TaskOptions, Text2TextTask, tasks_using


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def verb_parser(name: str) -> argparse.ArgumentParser:
    return subparsers(build_parser(only=name))[name]


def rendered_help(parser: argparse.ArgumentParser, flag: str) -> str:
    """The --help entry of one flag, as the verb's formatter writes it, on one line."""
    (action,) = [a for a in parser._actions if flag in a.option_strings]
    formatter = parser.formatter_class(prog=parser.prog)
    formatter.add_argument(action)
    return " ".join(formatter.format_help().split())


def own_fields(cls) -> list[dataclasses.Field]:
    """The settings of a config, without its nested configs (those are flag groups of their own)."""
    hints = typing.get_type_hints(cls)

    def nested(tp) -> bool:
        return any(isinstance(t, type) and issubclass(t, Config) for t in (tp, *typing.get_args(tp)))

    return [f for f in dataclasses.fields(cls) if not nested(hints[f.name])]


def test_every_verb_has_help_a_run_function_and_is_listed(capsys):
    listing = build_parser(only="").format_help()
    for verb in VERBS:
        assert verb.help and callable(verb.run), verb.name
        assert f"    {verb.name} " in listing or f"    {verb.name}\n" in listing, verb.name
        for sub in verb.verbs:
            assert sub.help and callable(sub.run) and sub.arguments is not None
            assert sub.name in verb_parser(verb.name).format_help()
    assert len({v.name for v in VERBS}) == len(VERBS)
    assert main([]) == 2 and "<verb>" in capsys.readouterr().out


@pytest.mark.parametrize("words", [[v.name] for v in VERBS] + [[v.name, s.name] for v in VERBS for s in v.verbs])
def test_help_of_every_verb(words, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*words, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: ptmzoo {' '.join(words)}")


def test_task_choices_are_the_task_registry():
    (task,) = [a for a in verb_parser("finetune")._actions if "--task" in a.option_strings]
    assert list(task.choices) == list(TASKS) and task.default == FinetuneConfig.task


@pytest.mark.parametrize("cls", sorted({task.Options for task in TASKS.values()}, key=lambda c: c.__name__)
                         + [StrategyConfig, FinetuneConfig], ids=lambda c: c.__name__)
def test_every_setting_is_a_flag_with_its_default_in_the_help(cls):
    parser = verb_parser("finetune")
    flags = {option: action for action in parser._actions for option in action.option_strings}
    for field in own_fields(cls):
        assert "flag" in field.metadata, f"{cls.__name__}.{field.name}: give it a setting(help=...) or flag=False"
        flag = flag_of(field)
        if flag is None:
            assert flag not in flags
            continue
        assert field.metadata["help"], field.name
        assert flags[flag].dest == field.name, flag
        shown = shown_default(field_default(field))
        if shown is not None:
            assert f"(default: {shown})" in rendered_help(parser, flag), flag


def test_a_setting_shared_by_several_tasks_is_declared_once():
    """One field object for a name in every task that has it, so its default is written once."""
    declared: dict[str, dataclasses.Field] = {}
    for task in TASKS.values():
        assert issubclass(task.Options, TaskOptions)
        for field in dataclasses.fields(task.Options):
            assert declared.setdefault(field.name, field) is field, field.name
    assert set(tasks_using("max_length")) == set(TASKS)
    assert tasks_using("language") == ["qa", "text2text"] and tasks_using("crf") == ["tagging"]


def test_pretrain_objectives_help_lists_the_objectives():
    text = rendered_help(verb_parser("pretrain"), "--objectives")
    assert all(name in text.split("one of ")[1] for name in OBJECTIVES)


def test_convert_help_lists_the_families_it_converts():
    text = " ".join(verb_parser("convert").format_help().split())
    listed = text.split("Families with a Hugging Face conversion: ")[1].split(".")[0].split(", ")
    assert listed == [name for name, spec in FAMILIES.items() if spec.hf_adapters]
    assert "ernie" not in listed and "transformer" not in listed


def test_every_help_shows_defaults_of_hand_written_flags():
    assert "(default: 50)" in rendered_help(verb_parser("generate"), "--max-new-tokens")
    assert "(default:" not in rendered_help(verb_parser("generate"), "--prompt-file")  # no default
    assert isinstance(verb_parser("generate").formatter_class(prog="x"), HelpFormatter)


FINETUNE = ["finetune", "--model", "m", "--train", "t.tsv", "--dev", "d.tsv", "--out", "o"]


def test_a_flag_of_another_task_is_refused_with_one_line(capsys):
    assert main(FINETUNE + ["--doc-stride", "16"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --doc-stride is a flag of --task qa; --task classification does not use it\n"
    assert main(FINETUNE + ["--task", "sft", "--label-column", "y"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--label-column is a flag of --task classification, regression, multilabel, " \
                                   "multiple-choice, text2text; --task sft does not use it" in err
    with pytest.raises(UserError, match="options.crf is an option of --task tagging; --task qa does not read it"):
        FinetuneConfig.from_dict({"task": "qa", "options": {"crf": True}})
    with pytest.raises(UserError, match="unknown key 'options.doc_strid' for QAOptions; did you mean 'doc_stride'"):
        FinetuneConfig.from_dict({"task": "qa", "options": {"doc_strid": 3}})


def test_flags_reach_the_task_and_strategy_configs():
    args = build_parser(only="finetune").parse_args(
        FINETUNE + ["--task", "qa", "--doc-stride", "16", "--max-length", "64", "--strategy", "lora",
                    "--lora-targets", "qkv, up", "--slanted-triangular", "--runs", "2", "--columns", "a,b"])
    assert task_option_values(args) == {"doc_stride": 16, "max_length": 64}
    train: dict = {}
    assert strategy_settings(args, train) == {"strategy": {"method": "lora", "lora_targets": ["qkv", "up"]}}
    assert train == {"schedule": "slanted_triangular"} and args.runs == 2 and args.columns == ["a", "b"]
    defaults = build_parser(only="finetune").parse_args(FINETUNE)
    assert task_option_values(defaults) == {} and strategy_settings(defaults, {}) == {"strategy": {}}
    files = {"model": "m", "train_file": "t", "dev_file": "d"}
    cfg = FinetuneConfig.from_dict({**files, "task": "qa", "options": task_option_values(args)})
    assert type(cfg.options) is QATask.Options and cfg.options.doc_stride == 16 and cfg.options.n_best == 20
    assert type(FinetuneConfig(task="tagging").options) is TaggingTask.Options


def test_zero_pretrain_flags_are_validated_not_ignored(tmp_path, capsys):
    run = ["pretrain", "--preset", "bert-tiny", "--data", str(tmp_path), "--out", str(tmp_path / "r")]
    for flag, message in [("--steps", "train.max_steps"), ("--batch-size", "train.batch_size"),
                          ("--lr", "train.lr"), ("--seq-len", "data.seq_len")]:
        assert main(run + [flag, "0"]) == 2, flag
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, (flag, err)


def test_old_checkpoints_options_of_every_task_still_load():
    """Checkpoints before per-task options stored every task's fields; each task keeps its own."""
    stored = {"text_column": "sentence", "text_pair_column": None, "label_column": "label", "max_length": 64,
              "pooling": None, "label_separator": ",", "tokens_column": "words", "tags_column": "tags",
              "scheme": "bio", "crf": True, "doc_stride": 32, "max_query_length": 64, "max_answer_length": 30,
              "n_best": 20, "language": "zh", "choices_column": "choices", "gpt_input": False, "both_orders": False,
              "aux_lm_weight": 0.0, "source_column": "source", "target_column": "target", "num_beams": 4,
              "label_smoothing": 0.1, "target_kind": "label", "prefix": "", "field_names": None,
              "label_names": None, "constrained": False}
    tagging = TaggingTask.meta_options({"options": stored})
    assert type(tagging) is TaggingTask.Options and tagging.crf and tagging.tokens_column == "words"
    qa = QATask.meta_options({"options": stored})
    assert (qa.doc_stride, qa.language, qa.max_length) == (32, "zh", 64) and not hasattr(qa, "crf")
    t2t = Text2TextTask.meta_options({"options": stored})
    assert t2t.text_column == "sentence" and t2t.scheme == "bio" and not hasattr(t2t, "source_column")
    for task in TASKS.values():
        assert set(task.meta_options({"options": stored}).to_dict()) == set(task.Options.field_types())
