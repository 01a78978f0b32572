"""One YAML config drives every step; this module loads it, applies `--set` overrides and
validates it, so a typo fails at once with the key's dotted name instead of deep in a run."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import yaml

from .errors import ConfigError


SELECTION_METHODS = ("llm_lora", "llm_icl", "tfidf", "encoder", "setfit")


@dataclass
class DataConfig:
    source: str = "debian"           # debian (shipped, real) | synthetic (unit tests) | hub name | local file/folder
    hub_config: Optional[str] = None  # e.g. "abstract" for ccdv/patent-classification
    text_field: str = "text"
    label_field: str = "label"
    label_names: Optional[list[str]] = None  # names for integer labels when the source has none
    sizes: list[int] = field(default_factory=lambda: [25, 75, 225])
    seeds: list[int] = field(default_factory=lambda: [0])
    stratify: bool = True
    split_seed: int = 0               # seed of made splits and of the evaluation subsample
    valid_fraction: float = 0.1       # used only when the source has no valid split
    test_fraction: float = 0.1        # used only when the source has no test split
    eval_size: Optional[int] = None   # rows of valid/test written for scoring; None = all
    # Documents longer than train.cutoff_len tokens (whole chat row) fail the data step unless this is
    # set: then each document is cut so its row fits max_tokens, identically for every method.
    max_tokens: Optional[int] = None
    synthetic_rows: int = 5000        # size of the synthetic test set (all splits together)
    # Which rows make the subsets (fewshot/selection/): random (always, the reference), typical (label-free,
    # TypiClust on the encoder's embeddings), uncertain (typical start, then a proxy on the bought rows)
    selection: list[str] = field(default_factory=lambda: ["random"])
    # the methods run on the chosen (non-random) subsets: llm_lora, llm_icl, tfidf, encoder, setfit
    selection_methods: list[str] = field(default_factory=lambda: list(SELECTION_METHODS))
    # seeds of the chosen subsets (each its own order: selection noise in the intervals); None = each
    # method's own seeds (data.seeds for the LLM, baselines.seeds for the baselines)
    selection_seeds: Optional[list[int]] = None
    # Reading local files: None = UTF-8 and ',' (a file that is neither fails naming the likely ones)
    encoding: Optional[str] = None
    delimiter: Optional[str] = None
    # The audit (fewshot/audit.py, data/audit.json): full = exact and near duplicates (frozen encoder
    # embeddings) and likely label errors (cleanlab); quick = exact duplicates and the warnings only
    audit: str = "full"
    near_duplicate_cosine: float = 0.95
    # Duplicate groups (exact, and near at or above the cosine): group = made splits keep each group whole,
    # and given splits that share one fail naming the rows; drop = as group, and a group shared by given
    # splits keeps only its rows in the earliest (train, then valid); keep = as they come (counted)
    duplicates: str = "group"
    # Labelling rounds (fewshot/rounds.py): the plan's label_next.csv/.jsonl filled in, or a Label Studio
    # export of its rows, one file per round in the order asked. The plan's selection grows by exactly the
    # filled rows (a new size for that selection and seed only); every other subset stays as it is.
    new_labels: list[str] = field(default_factory=list)
    out_dir: str = "data"


@dataclass
class ModelConfig:
    name_or_path: str = "models/SmolLM2-135M-Instruct"
    template: str = "smollm2"         # LLaMA-Factory template; must render like the served chat template
    served_name: str = "base"


@dataclass
class TrainConfig:
    out_dir: str = "saves"
    log_dir: str = "logs"
    lora_rank: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.0
    lora_target: str = "all"
    learning_rate: float = 5e-5
    num_train_epochs: float = 3.0
    min_steps: int = 0                # raise the epochs of small subsets to at least this many optimizer steps
    per_device_train_batch_size: int = 2
    gradient_accumulation_steps: int = 4
    lr_scheduler_type: str = "cosine"
    cutoff_len: int = 1024
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    logging_steps: int = 5
    save_steps: int = 100
    seed: int = 42
    device: str = "auto"              # auto | cpu | cuda
    precision: str = "auto"           # auto | bf16 | fp16 | fp32
    gradient_checkpointing: bool = True
    # Vocabulary logits only from the first labelled position on (fewshot/train_env/lf_train.py): the same loss
    # and gradients without the logits of the prompt's tokens, ~a quarter of a small model's CPU step.
    labelled_logits_only: bool = True
    # Same effective batch, lr and epochs, fewer and larger steps: micro-batch = batch x accumulation,
    # no accumulation, no gradient checkpointing, length-grouped batches (less padding). For GPUs
    # with memory to spare; a small model is launch-overhead bound at the original study's micro-batch of 2.
    fast: bool = False
    gpus: Optional[int] = None        # cards to spread runs over, one run each (None = every visible one)
    # Runs side by side on each card: a small model leaves a large card mostly idle (launch-bound), so
    # 2-4 of its runs share one; each run is still its own process with its own seed and results.
    runs_per_gpu: int = 1
    # Runs side by side on a CPU, each pinned to its share of the cores (1 = one run on every core):
    # 1.6x the runs per hour on 2 cores (fewshot/devices.py cpu_lanes); ~2.3 GB per SmolLM2 run.
    cpu_parallel: int = 2
    extra: dict[str, Any] = field(default_factory=dict)  # any other LLaMA-Factory key, passed through


@dataclass
class EvalConfig:
    mode: str = "merged"              # per_adapter | multi_lora | merged
    split: str = "valid"              # valid | test
    zero_shot: bool = True            # also score the base model (n = 0): free and label-constrained answers
    constrained: bool = False         # LoRA runs: structured outputs restrict answers to the labels (in-context runs get both)
    icl: bool = False                 # also score the base model with each subset as in-context demonstrations
    icl_max_tokens: Optional[int] = None  # demonstration budget; None = served context - longest row - answer
    icl_sizes: Any = "all"            # the subsets scored in context: all | smallest | a list of data.sizes
    icl_free: bool = True             # in-context runs: also score free-form answers (label-constrained always)
    # Requests in flight. 64 keeps a CPU server saturated on both CPU kinds measured (16 reached
    # 0.82-0.85 of the open-loop limit on an AVX-512 BF16 EPYC); a GPU server wants more.
    concurrency: int = 64
    max_tokens: int = 24
    request_timeout: float = 120.0    # no answer at all for this long = a stalled server (not per request)
    max_retries: int = 4
    server_start_timeout: float = 600.0
    server_args: list[str] = field(default_factory=list)  # extra `vllm serve` flags
    # Servers side by side on a CPU, each with its lane of cores (the base model's runs on one, an
    # adapter's on another): start-ups and merges overlap scoring (1.26x on two adapters, 2 cores).
    cpu_parallel: int = 2
    # merged mode: a lane's adapters share one server, each next adapter's weights loaded into it in
    # place (~1 s against a ~20 s start on one core; the answers of a fresh server). auto: on a CPU,
    # where the starts weigh most; always | never. It turns on vLLM's development endpoints, which the
    # API key does not guard: on a box shared with other users, never.
    reload_weights: str = "auto"
    out_dir: str = "objs"
    merged_dir: str = "saves/merged"
    bootstrap: int = 1000


# SetFit's classification head: scikit-learn LogisticRegression parameters. "setfit" is SetFit's own
# default (C=1, unweighted), which on imbalanced labels predicts mostly the large classes;
# `python -m fewshot sweep setfit_head` compares these on the valid split (README, "Baselines").
SETFIT_HEADS = {
    "setfit": {},
    "balanced": {"class_weight": "balanced", "max_iter": 2000},
    "C10": {"C": 10.0, "max_iter": 2000},
    "balanced_C10": {"class_weight": "balanced", "C": 10.0, "max_iter": 2000},
}


@dataclass
class BaselinesConfig:
    methods: list[str] = field(default_factory=lambda: ["tfidf", "encoder", "setfit"])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    encoder: str = "auto"             # auto = the offline all-MiniLM-L6-v2 package; or a model path/name
    encoder_epochs: float = 10.0
    encoder_lr: float = 5e-5
    encoder_batch_size: int = 16
    encoder_min_steps: int = 0        # raise the epochs of small subsets to at least this many optimizer steps
    setfit_iterations: int = 5
    setfit_head: str = "balanced"  # a name of SETFIT_HEADS, chosen on the valid split (README)
    cpu_parallel: int = 2             # encoder and SetFit runs side by side on a CPU, as train.cpu_parallel


@dataclass
class SweepConfig:
    """A recipe sweep scored on the valid split (python -m fewshot sweep): pick settings there,
    report on test. Each recipe is a set of overrides of this config."""
    sizes: list[int] = field(default_factory=list)   # [] = data.sizes
    split: str = "valid"
    recipes: dict[str, Any] = field(default_factory=dict)
    # `python -m fewshot sweep encoder`: the encoder fine-tune's recipes, each a set of baselines.* overrides
    encoder_recipes: dict[str, Any] = field(default_factory=dict)
    out_dir: str = "sweep"


@dataclass
class ReportConfig:
    out_dir: str = "report"
    notebook: str = "see_result.ipynb"
    targets: list[float] = field(default_factory=lambda: [0.6, 0.7, 0.8, 0.9])  # accuracy / macro-F1 to reach
    curve_bootstrap: int = 200        # bootstrap refits of each learning curve


@dataclass
class PlanConfig:
    """The labelling plan (report/label_plan.json, report/label_next.csv): for one method and target,
    how many rows to label next, chosen from the distribution of rows needed as LOC does (Mahmood
    et al., NeurIPS 2022): the labels bought against the chance of needing yet another round."""
    method: str = "llm_lora"          # llm_lora | tfidf | encoder | setfit
    target: float = 0.8               # accuracy to reach
    cost_per_label: float = 1.0
    cost_per_round: float = 500.0     # one more round (set-up, retraining, the wait), in label units (chosen on LCDB: docs/selection.md)
    max_ratio: float = 8.0            # one round buys at most this many times the rows measured
    pool: Optional[str] = None        # unlabelled rows to rank (data's format); None = the train rows not used


@dataclass
class Config:
    name: str = "demo"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    baselines: BaselinesConfig = field(default_factory=BaselinesConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    plan: PlanConfig = field(default_factory=PlanConfig)
    path: str = ""                    # where it was loaded from (set by load_config)

    def hash(self, *sections: str) -> str:
        """Stable short hash of the named sections (all when none), for done-markers."""
        d = dataclasses.asdict(self)
        d.pop("path")
        if sections:
            d = {s: d[s] for s in sections}
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


CHOICES = {
    "eval.mode": {"per_adapter", "multi_lora", "merged"},
    "eval.split": {"valid", "test"},
    "eval.reload_weights": {"auto", "always", "never"},
    "train.device": {"auto", "cpu", "cuda"},
    "train.precision": {"auto", "bf16", "fp16", "fp32"},
}


def _check(value: Any, tp: Any, key: str, where: str) -> Any:
    """Return value converted to tp, or raise ConfigError naming key and file."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        return _check(value, [a for a in args if a is not type(None)][0], key, where)
    if value is None:
        raise ConfigError(f"{where}: '{key}' is missing a value (expected {_tname(tp)})")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: '{key}' must be a mapping, got {type(value).__name__}")
        return _build(tp, value, key, where)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: '{key}' must be a list of {_tname(args[0])}, got {value!r}")
        return [_check(v, args[0], f"{key}[{i}]", where) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: '{key}' must be a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp is bool and not isinstance(value, bool):
        raise ConfigError(f"{where}: '{key}' must be true or false, got {value!r}")
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{where}: '{key}' must be an integer, got {value!r}")
    if not isinstance(value, tp):
        raise ConfigError(f"{where}: '{key}' must be {_tname(tp)}, got {value!r} ({type(value).__name__})")
    return value


def _tname(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _build(cls: Any, raw: dict, prefix: str, where: str) -> Any:
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.name != "path"}
    for k in raw:
        if k not in names:
            full = f"{prefix}.{k}" if prefix else k
            raise ConfigError(f"{where}: unknown config key '{full}' (known: {', '.join(sorted(names))})")
    kwargs = {}
    for k, v in raw.items():
        full = f"{prefix}.{k}" if prefix else k
        kwargs[k] = _check(v, hints[k], full, where)
        if full in CHOICES and kwargs[k] not in CHOICES[full]:
            raise ConfigError(f"{where}: '{full}' must be one of {sorted(CHOICES[full])}, got {v!r}")
    return cls(**kwargs)


def _apply_override(raw: dict, item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected key=value, e.g. --set data.sizes=[100,500]")
    key, _, text = item.partition("=")
    try:
        value = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError as e:
        raise ConfigError(f"--set {key}: cannot parse value {text!r}: {e}") from None
    node = raw
    parts = key.strip().split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: '{p}' is not a section")
    node[parts[-1]] = value


def _env_overrides() -> list[str]:
    """FEWSHOT_SET='a.b=1;c.d=x' lets shell users override keys without editing YAML."""
    text = os.environ.get("FEWSHOT_SET", "").strip()
    return [s for s in text.split(";") if s.strip()] if text else []


def load_config(path: str | os.PathLike, overrides: list[str] | None = None) -> Config:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{p}: top level must be a mapping")
    for item in _env_overrides() + list(overrides or []):
        _apply_override(raw, item)
    cfg = _build(Config, raw, "", str(p))
    cfg.path = str(p)
    _validate(cfg, str(p))
    return cfg


def override(cfg: Config, overrides: list[str]) -> Config:
    """A copy of a loaded config with `key=value` overrides applied and validated like --set: what a
    sweep's recipes start from, so the user's own --set values stay (reloading cfg.path would drop them)."""
    raw = cfg.as_dict()
    path = raw.pop("path")
    for item in overrides:
        _apply_override(raw, item)
    out = _build(Config, raw, "", path or "<config>")
    out.path = path
    _validate(out, path or "<config>")
    return out


RESOLVED = "config.resolved.yaml"


def save_resolved(cfg: Config, out_dir: str | os.PathLike, name: str = RESOLVED) -> Path:
    """Write the fully resolved config (file + FEWSHOT_SET + --set) next to a step's outputs: what
    it ran with, and what a later process (the report's notebook) loads instead of re-parsing the
    original file plus override strings. Loading it back gives the same config (same hash)."""
    from .fileio import atomic_write_text
    raw = cfg.as_dict()
    raw.pop("path")
    p = Path(out_dir) / name
    atomic_write_text(p, f"# resolved from {cfg.path or '<config>'}; loading it back gives the same config\n"
                         + yaml.safe_dump(raw, sort_keys=False))
    return p


def _validate(cfg: Config, where: str) -> None:
    d = cfg.data
    if not d.sizes:
        raise ConfigError(f"{where}: 'data.sizes' is empty")
    if any(n <= 0 for n in d.sizes):
        raise ConfigError(f"{where}: 'data.sizes' must be positive, got {d.sizes}")
    dup = sorted({n for n in d.sizes if d.sizes.count(n) > 1})
    if dup:
        raise ConfigError(f"{where}: 'data.sizes' has duplicate sizes {dup}")
    if not d.seeds or len(set(d.seeds)) != len(d.seeds):
        raise ConfigError(f"{where}: 'data.seeds' must be a non-empty list of distinct seeds, got {d.seeds}")
    if d.eval_size is not None and d.eval_size <= 0:
        raise ConfigError(f"{where}: 'data.eval_size' must be positive or null, got {d.eval_size}")
    for k in ("valid_fraction", "test_fraction"):
        if not 0 < getattr(d, k) < 0.5:
            raise ConfigError(f"{where}: 'data.{k}' must be in (0, 0.5), got {getattr(d, k)}")
    if d.max_tokens is not None and not 0 < d.max_tokens <= cfg.train.cutoff_len:
        raise ConfigError(f"{where}: 'data.max_tokens' must be in (0, train.cutoff_len={cfg.train.cutoff_len}], "
                          f"got {d.max_tokens}")
    if cfg.eval.icl_max_tokens is not None and cfg.eval.icl_max_tokens <= 0:
        raise ConfigError(f"{where}: 'eval.icl_max_tokens' must be positive or null")
    at = cfg.eval.icl_sizes
    if not (at in ("all", "smallest") or (isinstance(at, list) and at and all(isinstance(n, int) for n in at))):
        raise ConfigError(f"{where}: 'eval.icl_sizes' must be all, smallest or a list of sizes, got {at!r}")
    extra = sorted(set(at) - set(d.sizes)) if isinstance(at, list) else []
    if extra:
        raise ConfigError(f"{where}: 'eval.icl_sizes' {extra} are not in 'data.sizes' {sorted(d.sizes)}")
    if cfg.eval.concurrency < 1:
        raise ConfigError(f"{where}: 'eval.concurrency' must be >= 1")
    if cfg.train.runs_per_gpu < 1:
        raise ConfigError(f"{where}: 'train.runs_per_gpu' must be >= 1, got {cfg.train.runs_per_gpu}")
    for key, v in (("train.cpu_parallel", cfg.train.cpu_parallel), ("eval.cpu_parallel", cfg.eval.cpu_parallel),
                   ("baselines.cpu_parallel", cfg.baselines.cpu_parallel)):
        if v < 1:
            raise ConfigError(f"{where}: '{key}' must be >= 1, got {v}")
    for m in cfg.baselines.methods:
        if m not in {"tfidf", "encoder", "setfit"}:
            raise ConfigError(f"{where}: unknown baseline method {m!r} in 'baselines.methods'")
    sel = d.selection
    from .selection import strategies
    known = strategies()
    for s in sel:
        if s not in known:
            raise ConfigError(f"{where}: unknown strategy {s!r} in 'data.selection' (known: {', '.join(known)})")
    if "random" not in sel or len(set(sel)) != len(sel):
        raise ConfigError(f"{where}: 'data.selection' must list 'random' (the reference every saving is measured "
                          f"against) and each strategy once, got {sel}")
    for m in d.selection_methods:
        if m not in SELECTION_METHODS:
            raise ConfigError(f"{where}: unknown method {m!r} in 'data.selection_methods' (known: "
                              f"{', '.join(SELECTION_METHODS)})")
    if d.selection_seeds is not None and (not d.selection_seeds or len(set(d.selection_seeds)) != len(d.selection_seeds)):
        raise ConfigError(f"{where}: 'data.selection_seeds' must be null or a non-empty list of distinct seeds")
    if d.audit not in ("full", "quick"):
        raise ConfigError(f"{where}: 'data.audit' must be full or quick, got {d.audit!r}")
    if d.duplicates not in ("group", "drop", "keep"):
        raise ConfigError(f"{where}: 'data.duplicates' must be group, drop or keep, got {d.duplicates!r}")
    if not 0 < d.near_duplicate_cosine <= 1:
        raise ConfigError(f"{where}: 'data.near_duplicate_cosine' must be in (0, 1], got {d.near_duplicate_cosine}")
    if d.delimiter is not None and len(d.delimiter) != 1:
        raise ConfigError(f"{where}: 'data.delimiter' must be one character (',', ';', '\\t', '|'), got {d.delimiter!r}")
    p = cfg.plan
    if p.method not in ("llm_lora", "tfidf", "encoder", "setfit"):
        raise ConfigError(f"{where}: 'plan.method' must be llm_lora, tfidf, encoder or setfit, got {p.method!r}")
    if not 0 < p.target < 1:
        raise ConfigError(f"{where}: 'plan.target' must be in (0, 1), got {p.target}")
    if p.cost_per_label <= 0 or p.cost_per_round < 0 or p.max_ratio <= 1:
        raise ConfigError(f"{where}: 'plan.cost_per_label' must be > 0, 'plan.cost_per_round' >= 0 and "
                          f"'plan.max_ratio' > 1")
    if cfg.baselines.setfit_head not in SETFIT_HEADS:
        raise ConfigError(f"{where}: 'baselines.setfit_head' must be one of {sorted(SETFIT_HEADS)}, "
                          f"got {cfg.baselines.setfit_head!r}")
