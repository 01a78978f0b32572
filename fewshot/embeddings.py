"""Frozen sentence embeddings of the shipped encoder (baselines.encoder) for the selection
strategies: computed once per set of texts and kept beside the data (data/embeddings/<sha>.npy),
so the data step, a rerun and the labelling plan read the same vectors. In bf16 where the encoder
fine-tune runs in it (devices.encoder_bf16): 2.5x faster on 2 AMX cores, every vector within cosine
0.99997 of fp32's; the precision is part of the cache key. Each computed file gets a record beside it
(seconds, tokens, cores) that `bench profile` reads."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .fileio import atomic_write_bytes, atomic_write_json
from .models import encoder_path

MAX_TOKENS = 256  # all-MiniLM-L6-v2's own max_seq_length, as the encoder baselines cut


def texts_key(texts: list[str], encoder: str, precision: str = "fp32") -> str:
    key = [Path(encoder).name, MAX_TOKENS, texts] + ([precision] if precision != "fp32" else [])  # fp32: the old keys
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


def embed(cfg, texts: list[str]) -> np.ndarray:
    """Unit-length embeddings, one row per text; cached by the texts, the encoder and the precision."""
    import time
    from .devices import encoder_bf16, usable_cpus
    enc = encoder_path(cfg)
    bf16 = encoder_bf16(cfg)
    path = Path(cfg.data.out_dir) / "embeddings" / f"{texts_key(texts, enc, 'bf16' if bf16 else 'fp32')}.npy"
    if path.exists():
        return np.load(path)
    import torch
    from sentence_transformers import SentenceTransformer
    t0 = time.time()
    model = SentenceTransformer(enc)  # a GPU where there is one
    model.max_seq_length = MAX_TOKENS
    # longest first: batches of similar length pad little; the order is undone below
    by_len = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        vecs = model.encode([texts[i] for i in by_len], batch_size=32, normalize_embeddings=True,
                            show_progress_bar=False, convert_to_numpy=True)
    secs = time.time() - t0
    out = np.empty_like(vecs, dtype=np.float32)
    out[by_len] = vecs
    import io
    buf = io.BytesIO()
    np.save(buf, out)
    atomic_write_bytes(path, buf.getvalue())
    tokens = sum(min(MAX_TOKENS, len(ids)) for ids in model.tokenizer(texts, verbose=False)["input_ids"])
    atomic_write_json(path.with_suffix(".json"), {
        "rows": len(texts), "tokens": tokens, "seconds": round(secs, 1), "precision": "bf16" if bf16 else "fp32",
        "cores": usable_cpus(),
        "threads": torch.get_num_threads(), "encoder": Path(enc).name})
    return out
