"""Run names and run folders, in one place: the data step names the subsets, the train step the
adapters, the eval step the scored runs, the baselines theirs, and everything that reads results
(report, curves, benches) finds them here.

    llm_train_{n}[_{sel}][_s{seed}] a training subset and the LoRA run trained on it (saves/<name>/);
                                   _{sel} for rows chosen by a strategy other than random (data.selection)
    zero_shot                      the base model, free answers
    zero_shot_constrained          the base model, answers restricted to the labels
    icl_{n}[_{sel}][_s{seed}][_constrained] the base model with the n-row subset as in-context demonstrations
                                   (free answers; _constrained: answers restricted to the labels)
    {method}_{n}[_{sel}]_s{seed}   a classical baseline on the same subset
Each scored run writes objs/<name>.json (+ .pkl for LLM runs) and objs/<name>/ (predictions)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .selection import RANDOM, get as get_strategy

ZERO_SHOT = "zero_shot"
ZERO_SHOT_CONSTRAINED = "zero_shot_constrained"


def _suffix(seed: int, first_seed: int) -> str:
    return "" if seed == first_seed else f"_s{seed}"


def _sel(selection: str) -> str:
    return get_strategy(selection).suffix


def train_file_name(size: int, seed: int, data_cfg, selection: str = RANDOM) -> str:
    """llm_train_{n} for the first seed (the original study's own names), llm_train_{n}_s{seed} otherwise;
    rows chosen by a strategy carry its name (llm_train_{n}_typical)."""
    return f"llm_train_{size}{_sel(selection)}{_suffix(seed, data_cfg.seeds[0])}"


def selections_for(cfg, method: str) -> list[str]:
    """random, then every other strategy of data.selection that this method runs on."""
    return [RANDOM] + [s for s in cfg.data.selection if s != RANDOM and method in cfg.data.selection_methods]


def seeds_for(cfg, method: str, selection: str) -> list[int]:
    """A method's seeds on a selection: its own seeds on random rows; data.selection_seeds (if set) on chosen ones."""
    own = cfg.baselines.seeds if method in ("tfidf", "encoder", "setfit") else cfg.data.seeds
    return own if selection == RANDOM or cfg.data.selection_seeds is None else list(cfg.data.selection_seeds)


def subset_seeds(cfg, selection: str) -> list[int]:
    """Every seed whose subsets of this selection some method reads: the data step writes exactly these."""
    if selection == RANDOM:  # the LLM's seeds first (its file names are relative to them), then the baselines'
        return cfg.data.seeds + [s for s in cfg.baselines.seeds if s not in cfg.data.seeds]
    out: list[int] = []
    for m in cfg.data.selection_methods:
        if m in ("tfidf", "encoder", "setfit") and m not in cfg.baselines.methods:
            continue
        if m == "llm_icl" and not cfg.eval.icl:
            continue
        out += [s for s in seeds_for(cfg, m, selection) if s not in out]
    return out


def eval_file_name(split: str) -> str:
    return f"llm_{split}"


def icl_name(size: int, seed: int, data_cfg, constrained: bool = False, selection: str = RANDOM) -> str:
    return f"icl_{size}{_sel(selection)}{_suffix(seed, data_cfg.seeds[0])}" + ("_constrained" if constrained else "")


def epochs_for(cfg, size: int) -> float:
    """train.num_train_epochs, raised for small subsets to at least train.min_steps optimizer steps
    (a 16-row subset at batch 8 makes only 2 steps an epoch)."""
    t = cfg.train
    if not t.min_steps or not size:
        return t.num_train_epochs
    per_epoch = max(1, -(-size // (t.per_device_train_batch_size * t.gradient_accumulation_steps)))
    return float(max(t.num_train_epochs, -(-t.min_steps // per_epoch)))


def encoder_epochs(b, n: int) -> float:
    """The configured epochs, raised so that a small subset still gets encoder_min_steps optimizer
    steps (4 epochs of 16 rows are 4 steps: the head never leaves its random start)."""
    steps_per_epoch = -(-n // b.encoder_batch_size)
    return max(b.encoder_epochs, -(-b.encoder_min_steps // steps_per_epoch))


def rows_passed(cfg, method: str, n: int) -> float:
    """The rows a run of `method` (a curve key's method) on n rows passes through its model while it
    trains: what its seconds grow with. Not n itself where a step floor raises the epochs (the encoder's
    100 steps: its runs take the same time from 16 rows to 200, then grow) or SetFit draws pairs per row."""
    if method == "encoder":
        return float(encoder_epochs(cfg.baselines, n) * n)
    if method == "llm_lora":
        return float(epochs_for(cfg, n) * n)
    if method == "setfit":
        return float(cfg.baselines.setfit_iterations * n)
    return float(n)


def baseline_name(method: str, size: int, seed: int, selection: str = RANDOM) -> str:
    return f"{method}_{size}{_sel(selection)}_s{seed}"


def sizes_for(cfg, selection: str, seed: int) -> list[int]:
    """The subset sizes of one selection and seed: data.sizes, plus the sizes labelling rounds reached on
    it (data.new_labels: only the selection the plan asked for grows, since only its rows got labels)."""
    from .rounds import round_sizes
    return sorted(set(cfg.data.sizes) | set(round_sizes(cfg).get((selection, seed), [])))


def run_names(cfg) -> list[tuple[str, int, int, str]]:
    """(LoRA run name, size, seed, selection) for every run the config asks for; named after its data file."""
    return [(train_file_name(n, s, cfg.data, sel), n, s, sel) for sel in selections_for(cfg, "llm_lora")
            for s in seeds_for(cfg, "llm_lora", sel) for n in sizes_for(cfg, sel, s)]


def icl_sizes(cfg) -> list[int]:
    """The subset sizes scored in context: eval.icl_sizes (all, smallest or a list)."""
    at = cfg.eval.icl_sizes
    sizes = sorted(cfg.data.sizes)
    return sizes if at == "all" else sizes[:1] if at == "smallest" else sorted(at)


def icl_answer_modes(cfg) -> tuple[bool, ...]:
    """constrained=False/True for each in-context run: label-constrained always, free-form if asked."""
    return (False, True) if cfg.eval.icl_free else (True,)


def eval_names(cfg) -> list[str]:
    """Every run the eval step scores for this config, trained yet or not, in a fixed order."""
    names = [ZERO_SHOT, ZERO_SHOT_CONSTRAINED] if cfg.eval.zero_shot else []
    if cfg.eval.icl:
        names += [icl_name(n, s, cfg.data, c, sel) for sel in selections_for(cfg, "llm_icl")
                  for s in seeds_for(cfg, "llm_icl", sel) for n in icl_sizes(cfg) for c in icl_answer_modes(cfg)]
    return names + [name for name, _, _, _ in run_names(cfg)]


def run_dir(cfg, name: str) -> Path:
    """Where LLaMA-Factory writes one LoRA run (adapter, checkpoints, done.json)."""
    return Path(cfg.train.out_dir) / name


def out_paths(cfg, name: str) -> dict[str, Path]:
    """Where the eval step writes one scored run."""
    o = Path(cfg.eval.out_dir)
    return {"json": o / f"{name}.json", "pkl": o / f"{name}.pkl", "dir": o / name,
            "preds": o / name / "predictions.jsonl", "state": o / name / "state.json"}


def merge_marker(cfg, name: str) -> Path:
    """The file that says a run's merged folder (eval.mode merged) is complete: its training hash
    and the merge's seconds."""
    return Path(cfg.eval.merged_dir) / name / "merged.json"


def train_lock(cfg, name: str) -> Path:
    return Path(cfg.train.out_dir) / f".{name}.lock"


def eval_lock(cfg, name: str) -> Path:
    return Path(cfg.eval.out_dir) / f".{name}.lock"


def shard_of(items: list, spec: str | None) -> list:
    """`--shard i/n`: every n-th item from the i-th (0-based), so n jobs on n machines that share the
    project folder split one study between them, each run in exactly one shard."""
    if not spec:
        return items
    from .errors import ConfigError
    try:
        i, n = (int(x) for x in spec.split("/"))
    except ValueError:
        raise ConfigError(f"--shard {spec!r}: expected i/n, e.g. --shard 0/4") from None
    if not (n >= 1 and 0 <= i < n):
        raise ConfigError(f"--shard {spec!r}: need 0 <= i < n")
    return items[i::n]


def shard_from_env(spec: str | None, env=None) -> str | None:
    """The shard of a Slurm array task when no --shard is given: SLURM_ARRAY_TASK_ID counted from
    SLURM_ARRAY_TASK_MIN (an array may start at 1) of SLURM_ARRAY_TASK_COUNT. A --shard given wins."""
    import os
    env = os.environ if env is None else env
    if spec or not (env.get("SLURM_ARRAY_TASK_ID") and env.get("SLURM_ARRAY_TASK_COUNT")):
        return spec
    from .errors import ConfigError
    try:
        i = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN") or 0)
        n = int(env["SLURM_ARRAY_TASK_COUNT"])
    except ValueError:
        raise ConfigError(f"SLURM_ARRAY_TASK_ID={env['SLURM_ARRAY_TASK_ID']!r} / SLURM_ARRAY_TASK_COUNT="
                          f"{env['SLURM_ARRAY_TASK_COUNT']!r}: not numbers; give --shard i/n") from None
    shard_of([], f"{i}/{n}")  # the same checks as --shard (an array with gaps gives i >= n)
    return f"{i}/{n}"


@dataclass
class Run:
    """One thing to score. kind: 'lora' (an adapter), 'zero_shot' (the base model alone) or 'icl'
    (the base model with demonstrations from the run's training subset in the prompt)."""
    name: str
    size: int
    seed: int | None
    adapter: Path | None  # None for the base model (zero-shot, in-context)
    train_hash: str = ""
    kind: str = "lora"
    constrained: bool = False
    demos: list = field(default_factory=list)   # in-context demonstrations (Alpaca rows), in order
    icl: dict = field(default_factory=dict)     # k, tokens, budget and which subset rows were used
    selection: str = RANDOM                     # which rows the subset holds (data.selection)

    @property
    def method(self) -> str:
        if self.kind == "zero_shot":
            return "llm_zero_shot_constrained" if self.constrained else "llm_zero_shot"
        if self.kind == "icl":
            return "llm_icl_constrained" if self.constrained else "llm_icl"
        return "llm_lora"


@dataclass
class EvalData:
    """The original study's result object (same field names), kept so its notebooks can read ours."""
    name: str
    in_cnt: int = 0
    not_in_cnt: int = 0
    preds: list = field(default_factory=list)
    labels: list = field(default_factory=list)
    not_in_texts: list = field(default_factory=list)
    eval: dict = field(default_factory=dict)
