"""Token counts with the model's own tokenizer and chat template (the one the server applies), so
that nothing is cut in silence: the data step measures every row against train.cutoff_len, the
eval step sizes the server's context (--max-model-len) and the in-context demonstrations from them."""
from __future__ import annotations

from functools import lru_cache

from .errors import FewshotError
from .prompt import chat_messages


@lru_cache(maxsize=2)
def tokenizer(model: str):
    from transformers import AutoTokenizer
    try:
        return AutoTokenizer.from_pretrained(model, trust_remote_code=True)
    except Exception as e:  # offline, missing folder, no tokenizer files
        raise FewshotError(f"model.name_or_path: cannot load the tokenizer of {model} to count tokens "
                           f"({type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''})") from None


def prompt_len(tok, messages: list[dict]) -> int:
    """Tokens the server feeds the model for these messages (chat template + generation prompt)."""
    ids = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if hasattr(ids, "keys"):
        ids = ids["input_ids"]
    return len(ids)


def answer_len(tok, label: str) -> int:
    """The label's tokens plus the end-of-turn token the model is trained to stop with."""
    return len(tok.encode(label, add_special_tokens=False)) + 1


def row_len(tok, row: dict) -> int:
    """A whole training row: system + user turns, generation prompt, answer, end of turn."""
    return prompt_len(tok, chat_messages(row)) + answer_len(tok, row["output"])


def truncate_text(tok, text: str, drop: int) -> str:
    """The text less about `drop` tokens at its end (cut on the tokenizer's own boundaries)."""
    ids = tok.encode(text, add_special_tokens=False)
    return tok.decode(ids[:max(1, len(ids) - drop)]).strip()


def stats(lengths: list[int]) -> dict:
    if not lengths:
        return {}
    s = sorted(lengths)
    q = lambda f: s[min(len(s) - 1, int(f * (len(s) - 1) + 0.5))]
    return {"min": s[0], "median": q(0.5), "p95": q(0.95), "max": s[-1], "mean": round(sum(s) / len(s), 1)}


def control_strings(tok) -> list[str]:
    """Every string the tokenizer turns into one added (control) token id, longest first: `<|im_end|>`,
    `<|im_start|>`, `<|endoftext|>`... A document holding one would write its own turn into the chat."""
    found = {t.content for t in getattr(tok, "added_tokens_decoder", {}).values() if getattr(t, "content", "")}
    found |= {t for t in getattr(tok, "all_special_tokens", []) if t}
    return sorted((t for t in found if len(t) > 1), key=lambda t: (-len(t), t))


def neutralize(text: str, controls: list[str]) -> str:
    """The text with a space after the first character of each control string in it ('<|im_end|>' ->
    '< |im_end|>'): the model reads it as ordinary tokens, in training and in serving alike, since both
    read the same data files. Repeated until none is left (a break can never make a new one whole,
    but one control string can hide inside another)."""
    for _ in range(8):
        hit = [c for c in controls if c in text]
        if not hit:
            return text
        for c in hit:
            text = text.replace(c, c[0] + " " + c[1:])
    return text
