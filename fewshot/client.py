"""The scoring client: langchain-openai ChatOpenAI against our vLLM server, many requests in
flight, each answer appended to `predictions.jsonl` the moment it arrives so a rerun (or a run
whose server died) picks up exactly the rows still missing."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path

from .errors import FewshotError
from .fileio import append_jsonl, read_jsonl
from .metrics import match_label
from .prompt import chat_messages


class ScoringError(FewshotError):
    pass


TOP_LOGPROBS = 5  # alternatives kept per answer token: enough to see the runner-up of a near-tie


def make_llm(base_url: str, model: str, max_tokens: int, timeout: float, max_retries: int,
             labels: list[str] | None = None, http_async_client=None, api_key: str | None = None):
    """ChatOpenAI at temperature 0; with labels, vLLM structured outputs restrict the answer to them.
    Each answer token comes back with its log-probability and its best alternatives: two scorings of
    one run can then tell a near-tie that bf16 batching flipped from a real difference (`agreement`).
    The OpenAI client underneath retries timeouts, connection errors and 5xx with exponential backoff.
    Pass a fresh `http_async_client` per event loop: langchain-openai's shared default one stays bound
    to the first loop and fails ("Event loop is closed") on the next asyncio.run."""
    from langchain_openai import ChatOpenAI
    kwargs = {}
    if http_async_client is not None:
        kwargs["http_async_client"] = http_async_client
    if labels:
        kwargs["extra_body"] = {"structured_outputs": {"choice": list(labels)}}
    return ChatOpenAI(model=model, base_url=base_url, api_key=api_key or "EMPTY", temperature=0, max_tokens=max_tokens,
                      timeout=timeout, max_retries=max_retries, logprobs=True, top_logprobs=TOP_LOGPROBS, **kwargs)


def token_logprobs(msg) -> list | None:
    """The answer's tokens as [token, logprob, [[alternative, logprob], ...]], rounded to 1e-4;
    None where the server sent none."""
    content = ((getattr(msg, "response_metadata", None) or {}).get("logprobs") or {}).get("content")
    if not content:
        return None
    return [[t["token"], round(float(t["logprob"]), 4),
             [[a["token"], round(float(a["logprob"]), 4)] for a in t.get("top_logprobs") or []]] for t in content]


def to_langchain(row: dict, demos: list[dict] | None = None):
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    return [kinds[m["role"]](content=m["content"]) for m in chat_messages(row, demos)]


def pending_rows(pred_path: Path, n: int) -> list[int]:
    done = {r["i"] for r in read_jsonl(pred_path)}
    return [i for i in range(n) if i not in done]


async def _score(make, rows: list[dict], todo: list[int], labels: list[str], pred_path: Path,
                 concurrency: int, progress: bool, desc: str, demos=None, stall_s: float = 120.0) -> list[tuple[int, str]]:
    import httpx
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency + 4)) as http:
        return await _score_with(make(http), rows, todo, labels, pred_path, concurrency, progress, desc, demos,
                                 stall_s)


async def _score_with(llm, rows, todo, labels, pred_path, concurrency, progress, desc, demos=None,
                      stall_s: float = 120.0):
    """Every pending row, `concurrency` requests in flight. A request waits behind the others it was
    sent with (on a slow CPU 64 rows in flight take minutes), so no answer at all for `stall_s` seconds
    is what means a stalled server: then the requests still out are given up, their rows stay pending."""
    sem = asyncio.Semaphore(concurrency)
    failures: list[tuple[int, str]] = []
    last, out, stalled = [time.monotonic()], [0], [False]  # last answer (or error); requests out; watchdog fired
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(todo), desc=desc, unit="row", mininterval=2.0)

    async def one(i: int) -> None:
        try:
            async with sem:
                out[0] += 1
                try:
                    msg = await llm.ainvoke(to_langchain(rows[i], demos))
                finally:
                    out[0] -= 1
                    last[0] = time.monotonic()
                raw = msg.content if isinstance(msg.content, str) else str(msg.content)
                lps = token_logprobs(msg)
        except asyncio.CancelledError:
            if not stalled[0]:  # Ctrl-C, a kill: not ours to swallow
                raise
            failures.append((i, f"Timeout: no answer from the server for {stall_s:g} s with requests in flight "
                                f"(eval.request_timeout)"))
            return
        except Exception as e:  # retried already by the client; recorded, row stays pending
            failures.append((i, f"{type(e).__name__}: {e}"))
            if bar:
                bar.update(1)
            return
        pred = match_label(raw, labels)
        row = {"i": i, "raw": raw, "pred": pred, "label": rows[i]["output"]}
        if lps is not None:
            row["logprobs"] = lps
        append_jsonl(pred_path, row)
        if bar:
            bar.update(1)

    tasks = [asyncio.ensure_future(one(i)) for i in todo]

    async def watchdog() -> None:
        while True:
            await asyncio.sleep(min(1.0, stall_s / 4))
            if out[0] and time.monotonic() - last[0] > stall_s:
                stalled[0] = True  # the rows still out or waiting stay pending: a rerun sends them again
                for t in tasks:
                    t.cancel()
                return

    watch = asyncio.ensure_future(watchdog())
    await asyncio.gather(*tasks, return_exceptions=True)
    watch.cancel()
    if bar:
        bar.close()
    return sorted(failures)


def score(base_url: str, model: str, rows: list[dict], labels: list[str], pred_path: Path, *,
          concurrency: int = 16, constrained: bool = False, max_tokens: int = 24, timeout: float = 120.0,
          max_retries: int = 4, progress: bool = True, desc: str = "", api_key: str | None = None,
          demos: list[dict] | None = None) -> dict:
    """Score the rows not yet in pred_path; returns counts. Raises ScoringError if rows failed.
    demos: in-context demonstrations sent before every row, the same for all rows (a cached prefix).
    timeout: seconds with requests out and no answer at all before the server counts as stalled."""
    pred_path = Path(pred_path)
    todo = pending_rows(pred_path, len(rows))
    if not todo:
        return {"scored": 0, "pending": 0, "seconds": 0.0}
    def make(http):  # one attempt may wait behind every other request out, each up to `timeout`
        return make_llm(base_url, model, max_tokens, timeout * max(1, concurrency), max_retries,
                        labels if constrained else None, http, api_key)
    t0 = time.time()
    failures = asyncio.run(_score(make, rows, todo, labels, pred_path, concurrency, progress, desc or model,
                                  demos, stall_s=timeout))
    secs = time.time() - t0
    if failures:
        first = failures[0][1].splitlines()[0][:300]
        raise ScoringError(f"{model}: {len(failures)} of {len(todo)} requests failed after retries "
                           f"(first: row {failures[0][0]}: {first}); the {len(todo) - len(failures)} answers "
                           f"received are saved in {pred_path}, rerun to finish")
    return {"scored": len(todo), "pending": 0, "seconds": round(secs, 2),
            "rows_per_s": round(len(todo) / secs, 3) if secs else None}
