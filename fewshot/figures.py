"""The report's figures. Each function draws one figure from the loader's tables, saves it as a
PNG (150 dpi) under the report folder when given one, and returns the matplotlib figure."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .results import METHOD_NAMES, SEED_PUBLISHED

COLORS = {"LLM + LoRA": "#d62728", "LLM zero-shot": "#7f7f7f", "TF-IDF + LogReg": "#1f77b4",
          "Encoder fine-tune": "#2ca02c", "SetFit": "#9467bd", "Seed (GLM-4-9B, published)": "#ff7f0e"}
DPI = 150


def _save(fig, out_dir, name: str):
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        fig.savefig(Path(out_dir) / name, dpi=DPI, bbox_inches="tight")
    return fig


def learning_curve(df: pd.DataFrame, out_dir=None, show_seed: bool = False):
    """Accuracy and macro-F1 against train rows (log x), mean ± std over seeds, bootstrap band for
    single-seed points, the zero-shot point as a dashed line."""
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.6), sharey=True)
    for ax, metric, label in ((axes[0], "accuracy", "Accuracy"), (axes[1], "macro_f1", "Macro-F1")):
        ci_key = "acc_ci95" if metric == "accuracy" else "f1_ci95"
        for method, g in df.groupby("method"):
            color = COLORS.get(method)
            if method == METHOD_NAMES["llm_zero_shot"]:
                ax.axhline(g[metric].mean(), color=color, ls="--", lw=1.5, label=f"{method} (0 rows)")
                continue
            agg = g.groupby("train_rows")[metric].agg(["mean", "std", "size"]).reset_index()
            x, y, sd = agg["train_rows"], agg["mean"], agg["std"].fillna(0)
            ax.plot(x, y, "o-", color=color, label=method + (" (mean ± std over seeds)" if agg["size"].max() > 1 else ""))
            ax.fill_between(x, y - sd, y + sd, color=color, alpha=0.15)
            if agg["size"].max() == 1:  # one seed: show the bootstrap 95% interval instead
                lo = [float(s.strip("[]").split(",")[0]) if s else np.nan for s in g.sort_values("train_rows")[ci_key]]
                hi = [float(s.strip("[]").split(",")[1]) if s else np.nan for s in g.sort_values("train_rows")[ci_key]]
                ax.fill_between(x, lo, hi, color=color, alpha=0.12, hatch="//", lw=0)
        if show_seed:
            ax.plot(SEED_PUBLISHED["train_rows"], SEED_PUBLISHED[metric], "s:", color=COLORS["Seed (GLM-4-9B, published)"],
                    label="Seed (GLM-4-9B, published)")
        ax.set_xscale("log")
        sizes = sorted(int(n) for n in df["train_rows"].unique() if n > 0)
        ax.set_xticks(sizes, [str(n) for n in sizes])
        ax.minorticks_off()
        ax.set_xlabel("Training rows (log scale)")
        ax.set_ylabel(f"{label} on the evaluation split")
        ax.set_title(f"{label} vs. labelled training rows")
        ax.grid(alpha=0.3, which="both")
        ax.set_ylim(-0.02, 1)  # a zero-shot line at 0 stays visible above the axis
    axes[1].legend(loc="upper left", fontsize=8)
    fig.suptitle("Learning curves (band: ± std over seeds, hatched: bootstrap 95% CI)", fontsize=10)
    fig.tight_layout()
    return _save(fig, out_dir, "learning_curve.png")


def radar(df: pd.DataFrame, out_dir=None):
    """The seed's radar chart: accuracy and macro P/R/F1, one polygon per LLM run (mean over seeds)."""
    metrics = ["accuracy", "macro_precision", "macro_recall", "macro_f1"]
    llm = df[df["method"].isin([METHOD_NAMES["llm_lora"], METHOD_NAMES["llm_zero_shot"]])]
    llm = llm.groupby("train_rows")[metrics].mean().reset_index()
    ang = np.linspace(0, 2 * np.pi, len(metrics), endpoint=False).tolist()
    fig = plt.figure(figsize=(6, 6))
    ax = fig.add_subplot(polar=True)
    cmap = plt.get_cmap("viridis", max(len(llm), 2))
    for k, (_, r) in enumerate(llm.iterrows()):
        vals = [r[m] for m in metrics]
        ax.plot(ang + ang[:1], vals + vals[:1], color=cmap(k), label=f"{int(r['train_rows'])} rows")
        ax.fill(ang + ang[:1], vals + vals[:1], color=cmap(k), alpha=0.08)
    ax.set_xticks(ang)
    ax.set_xticklabels(["Accuracy", "Macro precision", "Macro recall", "Macro-F1"])
    ax.set_ylim(0, 1)
    ax.set_title("LLM runs: four metrics", pad=20)
    ax.legend(loc="upper right", bbox_to_anchor=(1.3, 1.1), fontsize=8)
    return _save(fig, out_dir, "radar.png")


def confusion(result: dict, out_dir=None):
    """Row-normalised confusion matrix of one run (rows: true label, columns: predicted)."""
    m = result["metrics"]
    cm = np.array(m["confusion_matrix"], dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.nan_to_num(cm / cm.sum(axis=1, keepdims=True))
    labels = [lab if len(lab) <= 28 else lab[:26] + "…" for lab in m["labels"]]
    fig, ax = plt.subplots(figsize=(7.5, 6.5))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(len(labels)), labels, fontsize=8)
    for i in range(len(labels)):
        for j in range(len(labels)):
            if norm[i, j] >= 0.01:
                ax.text(j, i, f"{norm[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if norm[i, j] > 0.6 else "black")
    ax.set_xlabel("Predicted label (invalid answers count in no column)")
    ax.set_ylabel("True label")
    ax.set_title(f"{result['name']}: confusion matrix, share of each true label")
    fig.colorbar(im, ax=ax, fraction=0.046, label="Share of the true label's rows")
    fig.tight_layout()
    return _save(fig, out_dir, f"confusion_{result['name']}.png")


def loss_curves(logs: dict[str, pd.DataFrame], out_dir=None):
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for name, df in sorted(logs.items(), key=lambda kv: kv[0]):
        x = df["current_steps"] if "current_steps" in df else range(len(df))
        ax.plot(x, df["loss"], marker=".", label=name)
    ax.set_xlabel("Optimizer step")
    ax.set_ylabel("Training loss (cross-entropy per answer token)")
    ax.set_title("LoRA training loss per run")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out_dir, "training_loss.png")
