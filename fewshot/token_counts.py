"""Every written row's length in the model's tokens, and train.cutoff_len enforced on all of them (or the
documents cut to data.max_tokens), so no row is cut in silence by training and seen whole by scoring."""
from __future__ import annotations

from .config import Config
from .errors import DataError
from .models import check_model_path


def model_tokenizer(cfg: Config):
    """The study model's tokenizer (its path checked first)."""
    from .tokens import tokenizer
    check_model_path(cfg)
    return tokenizer(cfg.model.name_or_path)


def measure_tokens(cfg: Config, files: dict[str, list[dict]], tok=None) -> dict[str, dict]:
    """Count every written row's tokens (system + user + answer, the model's chat template) and
    enforce train.cutoff_len on all of them, so no row is cut in silence by LLaMA-Factory (training)
    and seen whole by the server (scoring). With data.max_tokens, documents are cut instead, in the
    rows themselves, so training, scoring and the baselines all read the same cut text."""
    from .prompt import build_input, chat_messages, strip_input
    from .tokens import answer_len, prompt_len, stats, truncate_text
    tok = tok or model_tokenizer(cfg)
    limit = cfg.data.max_tokens or cfg.train.cutoff_len
    cache: dict[tuple, tuple[int, int, str]] = {}  # (input, output) -> (prompt, answer, cut input)

    def measure(r: dict) -> tuple[int, int, str]:
        key = (r["input"], r["output"])
        if key not in cache:
            text, a = r["input"], answer_len(tok, r["output"])
            p = prompt_len(tok, chat_messages({**r, "input": text}))
            while cfg.data.max_tokens and p + a > limit:  # cut the document, then measure again
                text = build_input(truncate_text(tok, strip_input(text), p + a - limit))
                p = prompt_len(tok, chat_messages({**r, "input": text}))
            cache[key] = (p, a, text)
        return cache[key]

    out, too_long = {}, []
    for name, rows in files.items():
        lengths, prompts, cut = [], [], 0
        for i, r in enumerate(rows):
            p, a, text = measure(r)
            if text != r["input"]:
                r["input"], cut = text, cut + 1
            if p + a > limit:
                too_long.append((p + a, name, i))
            lengths.append(p + a)
            prompts.append(p)
        out[name] = {**stats(lengths), "max_prompt": max(prompts), "longest_prompt_row": prompts.index(max(prompts)) + 1,
                     "truncated": cut}
    if too_long:
        n, name, i = max(too_long)
        raise DataError(f"{len(too_long)} row(s) are longer than train.cutoff_len={cfg.train.cutoff_len} tokens "
                        f"(longest: {cfg.data.out_dir}/{name}.json row {i + 1}, {n} tokens with the chat template); "
                        f"raise train.cutoff_len, or set data.max_tokens to cut the documents to fit (the same cut "
                        f"for training, scoring and the baselines)")
    if cfg.data.max_tokens:
        n_cut = sum(1 for k, v in cache.items() if v[2] != k[0])
        print(f"data: {n_cut} document(s) cut to fit data.max_tokens={cfg.data.max_tokens}")
    return out
