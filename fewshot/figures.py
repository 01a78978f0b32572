"""The report's figures. Each function draws one figure from the loader's tables, saves it as a
PNG (150 dpi) under the report folder when given one, and returns the matplotlib figure."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .curve import FAR
from .results import METHOD_NAMES, SEED_PUBLISHED, ZERO_SHOT_METHODS

COLORS = {"LLM + LoRA": "#d62728", "LLM in-context": "#e377c2", "LLM zero-shot (free answer)": "#7f7f7f",
          "LLM zero-shot (label-constrained)": "#17becf", "TF-IDF + LogReg": "#1f77b4",
          "Encoder fine-tune": "#2ca02c", "SetFit": "#9467bd", "Seed (GLM-4-9B, published)": "#ff7f0e"}
DPI = 150


def _save(fig, out_dir, name: str):
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        fig.savefig(Path(out_dir) / name, dpi=DPI, bbox_inches="tight")
    return fig


def learning_curve(df: pd.DataFrame, out_dir=None, show_seed: bool = False, curves: dict | None = None):
    """Accuracy and macro-F1 against train rows (log x): every run's point, the mean over seeds,
    the fitted power law through them with its bootstrap 95% band (dashed past the largest measured
    size, out to where the largest target is reached), the zero-shot points as horizontal lines."""
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    fits = {(f["method"], f["metric"]): f for f in (curves or {}).get("fits", []) if f.get("status") == "ok"}
    fell = {m for (m, _), f in fits.items() if f.get("falls")}  # gets worse with rows: no curve drawn
    need = [r["rows"] for r in (curves or {}).get("labels_needed", []) if r["reachable"] and r["rows"]]
    measured = [int(n) for n in df["train_rows"].unique() if n > 0]
    x_max = max(measured, default=1)
    if need:
        x_max = min(max(max(need), x_max), FAR * x_max)  # no line past where the headline stops
    styles = {METHOD_NAMES["llm_zero_shot"]: ":", METHOD_NAMES["llm_zero_shot_constrained"]: "--"}
    for ax, metric, label in ((axes[0], "accuracy", "Accuracy"), (axes[1], "macro_f1", "Macro-F1")):
        for method, g in df.groupby("method"):
            color = COLORS.get(method)
            if method in ZERO_SHOT_METHODS:
                ax.axhline(g[metric].mean(), color=color, ls=styles[method], lw=1.5, label=f"{method} (0 rows)")
                continue
            g = g[g["train_rows"] > 0]
            if g.empty:
                continue
            agg = g.groupby("train_rows")[metric].agg(["mean", "std", "size"]).reset_index()
            ax.scatter(g["train_rows"], g[metric], color=color, s=12, alpha=0.5)
            seeds = agg["size"].max()
            key = next((m for m, v in METHOD_NAMES.items() if v == method), None)
            ax.plot(agg["train_rows"], agg["mean"], "o" + (":" if key in fell else ""), color=color,
                    label=method + (f" ({seeds} seeds)" if seeds > 1 else "") + (" (falls: no fit)" if key in fell else ""))
            if method == METHOD_NAMES["llm_icl"] and "k_demos" in g:
                for n, k in g.groupby("train_rows")["k_demos"].first().items():
                    if pd.notna(k) and k != n:
                        ax.annotate(f"k={int(k)}", (n, agg.set_index("train_rows").loc[n, "mean"]), fontsize=7,
                                    color=color, textcoords="offset points", xytext=(4, -10))
            f = fits.get((key, metric))
            if f and key not in fell:
                lo_n, hi_n = min(agg["train_rows"]), max(agg["train_rows"])
                xs = np.geomspace(lo_n, max(hi_n, x_max), 200)
                ys = f["a"] - f["b"] * xs ** (-f["c"])
                inside = xs <= hi_n
                ax.plot(xs[inside], ys[inside], "-", color=color, lw=1.5)
                ax.plot(xs[~inside], ys[~inside], "--", color=color, lw=1.2)
                if f.get("boot"):
                    B = np.array(f["boot"])
                    band = B[:, :1] - B[:, 1:2] * xs[None, :] ** (-B[:, 2:3])
                    ax.fill_between(xs, np.percentile(band, 2.5, axis=0), np.percentile(band, 97.5, axis=0),
                                    color=color, alpha=0.12, lw=0)
        if show_seed:
            ax.plot(SEED_PUBLISHED["train_rows"], SEED_PUBLISHED[metric], "s:", color=COLORS["Seed (GLM-4-9B, published)"],
                    label="Seed (GLM-4-9B, published)")
        for t in (curves or {}).get("targets", []):
            ax.axhline(t, color="#bbbbbb", lw=0.6, zorder=0)
        ax.set_xscale("log")
        if measured:
            ticks = sorted(set(measured) | ({int(x_max)} if x_max > max(measured) else set()))
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.minorticks_off()
        ax.set_xlabel("Labelled training rows (log scale)")
        ax.set_ylabel(f"{label} on the {_split(df)} split")
        ax.set_title(f"{label} vs. labelled training rows")
        ax.grid(alpha=0.3, which="both")
        ax.set_ylim(-0.02, 1)  # a zero-shot line at 0 stays visible above the axis
    axes[1].legend(loc="center left", bbox_to_anchor=(1.02, 0.5), fontsize=8)
    fig.suptitle("Learning curves: points = runs (one per seed), line = fitted a - b·n^-c, band = bootstrap 95%, "
                 "dashed = extrapolated", fontsize=10)
    fig.tight_layout()
    return _save(fig, out_dir, "learning_curve.png")


def _split(df: pd.DataFrame) -> str:
    s = sorted(set(df["split"].dropna())) if "split" in df else []
    return "/".join(s) or "evaluation"


def radar(df: pd.DataFrame, out_dir=None):
    """The seed's radar chart: accuracy and macro P/R/F1, one polygon per LLM run (mean over seeds)."""
    metrics = ["accuracy", "macro_precision", "macro_recall", "macro_f1"]
    llm = df[df["method"].isin([METHOD_NAMES["llm_lora"], *ZERO_SHOT_METHODS])]
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
