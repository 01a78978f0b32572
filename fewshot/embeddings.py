"""Frozen sentence embeddings of the shipped encoder (baselines.encoder) for the selection
strategies: computed once per set of texts and kept beside the data (data/embeddings/<sha>.npy),
so the data step, a rerun and the labelling plan read the same vectors."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .fileio import atomic_write_bytes
from .models import encoder_path

MAX_TOKENS = 256  # all-MiniLM-L6-v2's own max_seq_length, as the encoder baselines cut


def texts_key(texts: list[str], encoder: str) -> str:
    return hashlib.sha256(json.dumps([Path(encoder).name, MAX_TOKENS, texts]).encode()).hexdigest()[:16]


def embed(cfg, texts: list[str]) -> np.ndarray:
    """Unit-length embeddings, one row per text; cached by the texts and the encoder."""
    enc = encoder_path(cfg)
    path = Path(cfg.data.out_dir) / "embeddings" / f"{texts_key(texts, enc)}.npy"
    if path.exists():
        return np.load(path)
    from sentence_transformers import SentenceTransformer
    model = SentenceTransformer(enc)  # a GPU where there is one
    model.max_seq_length = MAX_TOKENS
    # longest first: batches of similar length pad little; the order is undone below
    by_len = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
    vecs = model.encode([texts[i] for i in by_len], batch_size=32, normalize_embeddings=True,
                        show_progress_bar=False, convert_to_numpy=True)
    out = np.empty_like(vecs)
    out[by_len] = vecs
    import io
    buf = io.BytesIO()
    np.save(buf, out.astype(np.float32))
    atomic_write_bytes(path, buf.getvalue())
    return out.astype(np.float32)
