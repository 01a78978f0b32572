"""The report's figures. Each function draws one figure from the loader's tables, saves it as a
PNG (150 dpi) under the report folder when given one, and returns the matplotlib figure."""
from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from .results import METHOD_NAMES, ORIGINAL_PUBLISHED, ZERO_SHOT_METHODS
from .selection import strategies

COLORS = {"LLM + LoRA": "#d62728", "LLM in-context (free answer)": "#e377c2",
          "LLM in-context (label-constrained)": "#8c564b", "LLM zero-shot (free answer)": "#7f7f7f",
          "LLM zero-shot (label-constrained)": "#17becf", "TF-IDF + LogReg": "#1f77b4",
          "Encoder fine-tune": "#2ca02c", "SetFit": "#9467bd", "Original study (GLM-4-9B, published)": "#ff7f0e"}
DPI = 150


def _save(fig, out_dir, name: str):
    if out_dir is not None:
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        fig.savefig(Path(out_dir) / name, dpi=DPI, bbox_inches="tight")
    return fig


def selection_curves(df: pd.DataFrame, out_dir=None, curves: dict | None = None):
    """One panel per method measured on more than one selection: accuracy against train rows for each
    (random, typical, uncertain), points = runs, line = fitted curve with its 90% band inside the data."""
    if "selection" not in df or df["selection"].nunique() < 2:
        return None
    df = df[df["train_rows"] > 0].copy()
    df["base"] = [METHOD_NAMES.get(m, m) for m in df["method_key"]]
    bases = [b for b, g in df.groupby("base", sort=False) if g["selection"].nunique() > 1]
    if not bases:
        return None
    fits = {(f["method"], f["metric"]): f for f in (curves or {}).get("fits", []) if f.get("status") == "ok"}
    known = strategies()
    fig, axes = plt.subplots(1, len(bases), figsize=(4.2 * len(bases), 3.8), sharey=True, squeeze=False)
    for ax, b in zip(axes[0], bases):
        mine = df[df["base"] == b]
        for sel in sorted(mine["selection"].unique(), key=lambda s: known[s].rank):
            g = mine[mine["selection"] == sel]
            x = "k_demos" if b.startswith("LLM in-context") and "k_demos" in g and g["k_demos"].notna().all() else "train_rows"
            agg = g.groupby(x)["accuracy"].mean()
            color = known[sel].colour
            ax.scatter(g[x], g["accuracy"], color=color, s=10, alpha=0.45)
            ax.plot(agg.index, agg.values, "o", color=color, label=f"{sel} ({g['seed'].nunique()} seeds)")
            k = known[sel].key(g["method_key"].iloc[0])
            f = fits.get((k, "accuracy"))
            if f and not f.get("shape") and f.get("line"):
                line = {kk: np.array(v) for kk, v in f["line"].items() if kk != "largest"}
                inside = line["x"] <= f["line"]["largest"]
                ax.plot(line["x"][inside], line["y"][inside], "-", color=color, lw=1.3)
                ax.fill_between(line["x"][inside], line["low"][inside], line["high"][inside], color=color, alpha=0.12, lw=0)
        ticks = sorted(int(n) for n in df.loc[df["base"] == b, "train_rows"].unique())
        ax.set_xscale("log")
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.set_title(b, fontsize=10)
        ax.set_xlabel("Labelled training rows (log scale)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    axes[0][0].set_ylabel(f"Accuracy on the {_split(df)} split")
    fig.suptitle("Which rows: random against chosen subsets (line = fitted curve, band = 90% interval)", fontsize=9)
    fig.tight_layout()
    return _save(fig, out_dir, "selection_curves.png")


def learning_curve(df: pd.DataFrame, out_dir=None, show_original: bool = False, curves: dict | None = None):
    """Accuracy and macro-F1 against train rows (log x): every run's point, the mean over seeds, the
    fitted curve through them with its 90% band (dashed past the largest measured size, out to the
    farthest ratio the curve benchmark measured), the zero-shot points as horizontal lines."""
    if "selection" in df:  # chosen rows have their own figure (selection_curves)
        df = df[df["selection"] == "random"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    fits = {(f["method"], f["metric"]): f for f in (curves or {}).get("fits", []) if f.get("status") == "ok"}
    fell = {m for (m, _), f in fits.items() if f.get("shape")}  # falls or dips: no curve drawn
    measured = [int(n) for n in df["train_rows"].unique() if n > 0]
    icl = {METHOD_NAMES[m] for m in ("llm_icl", "llm_icl_constrained")}
    if "k_demos" in df:  # in-context runs stand at the demonstrations they were shown
        measured += [int(k) for k in df.loc[df["method"].isin(icl), "k_demos"].dropna().unique()]
    x_max = max([max(measured, default=1)] + [f["line"]["x"][-1] for f in fits.values() if f.get("line")])
    styles = {METHOD_NAMES["llm_zero_shot"]: ":", METHOD_NAMES["llm_zero_shot_constrained"]: "--"}
    for ax, metric, label in ((axes[0], "accuracy", "Accuracy"), (axes[1], "macro_f1", "Macro-F1")):
        for method, g in df.groupby("method"):
            color = COLORS.get(method)
            if method in ZERO_SHOT_METHODS:
                ax.axhline(g[metric].mean(), color=color, ls=styles[method], lw=1.5, label=f"{method} (0 rows)")
                continue
            if method in icl and "k_demos" in g:
                g = g.assign(train_rows=g["k_demos"])
            g = g[g["train_rows"] > 0]
            if g.empty:
                continue
            agg = g.groupby("train_rows")[metric].agg(["mean", "std", "size"]).reset_index()
            ax.scatter(g["train_rows"], g[metric], color=color, s=12, alpha=0.5)
            seeds = agg["size"].max()
            key = g["method_key"].iloc[0] if "method_key" in g else None  # random rows: the curve key is the method
            legend = method + (" (x = demonstrations shown)" if method in icl else "")
            ax.plot(agg["train_rows"], agg["mean"], "o" + (":" if key in fell else ""), color=color,
                    label=legend + (f" ({seeds} seeds)" if seeds > 1 else "") + (" (falls or dips: no fit)" if key in fell else ""))
            f = fits.get((key, metric))
            if f and key not in fell and f.get("line"):
                line = {k: np.array(v) for k, v in f["line"].items() if k != "largest"}
                inside = line["x"] <= f["line"]["largest"]
                ax.plot(line["x"][inside], line["y"][inside], "-", color=color, lw=1.5)
                ax.plot(line["x"][~inside], line["y"][~inside], "--", color=color, lw=1.2)
                ax.fill_between(line["x"], line["low"], line["high"], color=color, alpha=0.12, lw=0)
        if show_original:
            ax.plot(ORIGINAL_PUBLISHED["train_rows"], ORIGINAL_PUBLISHED[metric], "s:", color=COLORS["Original study (GLM-4-9B, published)"],
                    label="Original study (GLM-4-9B, published)")
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
    rule = (curves or {}).get("rule", "")
    fig.suptitle(f"Learning curves: points = runs (one per seed), line = fitted ({rule}), band = 90% interval "
                 "(rows and seeds resampled; widened past the data by the curve benchmark), dashed = extrapolated",
                 fontsize=9)
    fig.tight_layout()
    return _save(fig, out_dir, "learning_curve.png")


def _split(df: pd.DataFrame) -> str:
    s = sorted(set(df["split"].dropna())) if "split" in df else []
    return "/".join(s) or "evaluation"


def radar(df: pd.DataFrame, out_dir=None):
    """The original study's radar chart: accuracy and macro P/R/F1, one polygon per LLM run (mean over seeds)."""
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
    return _save(fig, out_dir, confusion_file(result))


def confusion_file(result: dict) -> str:
    """The file name `confusion` saves a run's matrix under."""
    return f"confusion_{result['name']}.png"


def confusion_image(result: dict, out_dir):
    """The confusion matrix drawn once, for the report: its saved PNG in place of the figure, which the
    notebook's inline backend would draw a second time (the demo's 26 matrices: 14.5 of the report's
    18 s went to drawing them twice). Without out_dir, the figure itself."""
    fig = confusion(result, out_dir)
    if out_dir is None:
        return fig
    from IPython.display import Image
    plt.close(fig)
    return Image(filename=str(Path(out_dir) / confusion_file(result)), width=round(fig.get_figwidth() * 100))


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
