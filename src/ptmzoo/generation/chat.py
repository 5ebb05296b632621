"""``ptmzoo chat MODEL``: talk to an instruction-tuned decoder in the terminal.

Each turn is formatted with the chat template stored in the checkpoint by ``ptmzoo finetune
--task sft`` (the default template otherwise), the whole conversation so far is the prompt, and
the reply streams as it is generated. ``/reset`` starts over, ``/exit`` (or Ctrl-D) ends.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import UserError


def chat_template_of(pretrained):
    from ..tasks.sft import ChatTemplate

    task = pretrained.meta.get("task") or {}
    return ChatTemplate(**task.get("chat_template", {}))


def chat_loop(pretrained, read: Callable[[str], str] = input, write: Callable[[str], None] | None = None,
              system: str | None = None, **options) -> list[dict]:
    """Run the conversation until ``/exit`` or end of input; returns the messages."""
    from ..tasks.sft import encode_conversation
    from .decoding import generate, lm_head

    write = write or (lambda text: print(text, end="", flush=True))
    tokenizer = pretrained.tokenizer
    if tokenizer is None:
        raise UserError(f"{pretrained.path} has no tokenizer; chat needs the checkpoint's tokenizer.json")
    lm_head(pretrained.model)  # fail early on models that cannot generate
    template = chat_template_of(pretrained)
    eos_id = tokenizer.eos_id if tokenizer.eos_id is not None else tokenizer.document_separator_id
    start = [{"role": "system", "content": system}] if system else []
    messages = list(start)
    max_new = options.setdefault("max_new_tokens", 200)
    context = pretrained.model.config.max_position_embeddings
    while True:
        try:
            line = read("you> ")
        except EOFError:
            break
        if line.strip() in ("/exit", "/quit"):
            break
        if line.strip() == "/reset":
            messages = list(start)
            continue
        if not line.strip():
            continue
        messages.append({"role": "user", "content": line})
        ids, _ = encode_conversation(tokenizer, template, messages, eos_id, open_reply=True)
        while len(ids) + max_new > context and len(messages) > len(start) + 1:
            messages = start + messages[len(start) + 2:]  # forget the oldest exchange
            ids, _ = encode_conversation(tokenizer, template, messages, eos_id, open_reply=True)
        if len(ids) + max_new > context:
            raise UserError(f"the message and max_new_tokens ({max_new}) do not fit in the model's context "
                            f"({context} tokens); write less or lower --max-new-tokens")
        write("bot> ")
        reply = generate(pretrained, [ids], on_text=lambda _, piece: write(piece),
                         stop=template.stop_strings, **options)
        write("\n")
        messages.append({"role": "assistant", "content": reply.text.strip()})
    return messages


def add_chat_parser(verbs, common) -> None:
    chat = verbs.add_parser("chat", parents=[common], help="talk to an instruction-tuned decoder (finetune --task sft)")
    chat.add_argument("model", help="checkpoint directory")
    chat.add_argument("--system", help="system message at the start of the conversation")
    chat.add_argument("--max-new-tokens", type=int, default=200)
    chat.add_argument("--temperature", type=float, help="sample at this temperature (default: greedy)")
    chat.add_argument("--top-k", type=int)
    chat.add_argument("--top-p", type=float)
    chat.add_argument("--repetition-penalty", type=float, default=1.0)
    chat.add_argument("--seed", type=int)


def cmd_chat(args) -> None:
    from ..checkpoint import load

    chat_loop(load(args.model), system=args.system, max_new_tokens=args.max_new_tokens,
              temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
              repetition_penalty=args.repetition_penalty, seed=args.seed)
