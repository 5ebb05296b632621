"""``ptmzoo chat MODEL`` (the loop; the verb is in ``cli``): talk to an instruction-tuned decoder in the terminal.

Each turn is formatted with the chat template stored in the checkpoint by ``ptmzoo finetune
--task sft`` (the default template otherwise), the whole conversation so far is the prompt, and
the reply streams as it is generated. ``/reset`` starts over, ``/exit`` (or Ctrl-D) ends.
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import UserError
from ..generation.decoding import generate, lm_head
from .sft import ChatTemplate, encode_conversation


def chat_template_of(pretrained):
    task = pretrained.meta.get("task") or {}
    return ChatTemplate(**task.get("chat_template", {}))


def chat_loop(pretrained, read: Callable[[str], str] = input, write: Callable[[str], None] | None = None,
              system: str | None = None, **options) -> list[dict]:
    """Run the conversation until ``/exit`` or end of input; returns the messages."""
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
