import pytest

from fewshot.config import load_config
from fewshot.errors import ConfigError


def test_demo_and_paper_presets_load():
    demo = load_config("configs/demo.yaml")
    paper = load_config("configs/paper.yaml")
    assert demo.model.template == "smollm2" and demo.data.source == "debian"  # real text, never synthetic
    assert demo.eval.split == "test" and demo.sweep.split == "valid"        # chosen on valid, reported on test
    sizes = sorted(demo.data.sizes)
    assert len(sizes) >= 3 and sizes[-1] >= 8 * sizes[0]
    assert paper.data.sizes == [100, 500, 1000, 2000]
    assert paper.data.eval_size is None and paper.model.template == "glm4" and paper.eval.split == "valid"
    # the original study's hyper-parameters
    t = paper.train
    assert (t.lora_rank, t.lora_alpha, t.lora_dropout, t.learning_rate, t.num_train_epochs) == (8, 16, 0.0, 5e-5, 3.0)
    assert (t.per_device_train_batch_size, t.gradient_accumulation_steps, t.cutoff_len) == (2, 4, 1024)


def test_overrides_any_key_with_yaml_values():
    cfg = load_config("configs/demo.yaml", ["data.sizes=[100,500]", "eval.constrained=true",
                                            "train.extra.flash_attn=auto"])
    assert cfg.data.sizes == [100, 500]
    assert cfg.eval.constrained is True
    assert cfg.train.extra == {"flash_attn": "auto"}


def test_env_overrides(monkeypatch):
    monkeypatch.setenv("FEWSHOT_SET", "data.seeds=[0,1];eval.concurrency=4")
    cfg = load_config("configs/demo.yaml")
    assert cfg.data.seeds == [0, 1] and cfg.eval.concurrency == 4


@pytest.mark.parametrize("override, message", [
    ("data.sise=3", "unknown config key 'data.sise'"),
    ("bogus=1", "unknown config key 'bogus'"),
    ("data.sizes=abc", "'data.sizes' must be a list"),
    ("data.sizes=[10,x]", "'data.sizes[1]' must be int"),
    ("train.learning_rate=fast", "'train.learning_rate' must be float"),
    ("data.stratify=maybe", "'data.stratify' must be true or false"),
    ("data.text_field=", "'data.text_field' is missing a value"),
    ("eval.mode=batch", "'eval.mode' must be one of"),
    ("data.sizes=[10,10]", "duplicate sizes [10]"),
    ("data.sizes=[0]", "must be positive"),
    ("train.runs_per_gpu=0", "'train.runs_per_gpu' must be >= 1"),
    ("nokey", "expected key=value"),
])
def test_bad_config_names_the_key(override, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config("configs/demo.yaml", [override])


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_config(bad)


def test_hash_changes_with_a_value():
    a = load_config("configs/demo.yaml")
    b = load_config("configs/demo.yaml", ["train.learning_rate=0.003"])  # the demo runs 0.002
    assert a.hash("data") == b.hash("data") and a.hash("train") != b.hash("train")


def test_override_of_a_loaded_config_keeps_its_set_values_and_validates(write_config):
    from fewshot.config import load_config, override
    from fewshot.errors import ConfigError
    from fewshot.sweep import recipe_config
    cfg = load_config(write_config({"sweep.recipes": {"r1": {"train.learning_rate": 0.01}}}),
                      ["data.source=mine.csv", "baselines.encoder_min_steps=50"])
    c = override(cfg, ["baselines.encoder_lr=1e-4"])
    assert (c.data.source, c.baselines.encoder_min_steps, c.baselines.encoder_lr) == ("mine.csv", 50, 1e-4)
    assert cfg.baselines.encoder_lr == 5e-5  # the original is not touched
    r = recipe_config(cfg, "r1")  # the sweep's recipes start from the loaded config, --set included
    assert r.data.source == "mine.csv" and r.train.learning_rate == 0.01 and r.eval.split == "valid"
    with pytest.raises(ConfigError, match="baselines.encoder_batch_size"):
        override(cfg, ["baselines.encoder_batch_size=many"])


def test_encoder_step_floor_raises_the_epochs_of_small_subsets():
    from fewshot.runs import encoder_epochs
    from fewshot.config import BaselinesConfig
    b = BaselinesConfig(encoder_epochs=4, encoder_batch_size=8, encoder_min_steps=100)
    assert encoder_epochs(b, 16) == 50      # 2 steps an epoch: 50 epochs make 100 steps
    assert encoder_epochs(b, 128) == 7      # 16 steps an epoch: ceil(100 / 16)
    assert encoder_epochs(b, 4000) == 4     # past the floor: the configured epochs
    assert encoder_epochs(BaselinesConfig(encoder_epochs=4), 16) == 4  # no floor by default


def test_the_configuration_reference_lists_every_key_and_no_other():
    """docs/configuration.md cannot drift from the dataclasses: every key once, no unknown key."""
    import dataclasses
    import re
    from pathlib import Path

    from fewshot.config import Config
    keys = {"name"}
    for f in dataclasses.fields(Config):
        if dataclasses.is_dataclass(getattr(Config(), f.name)):  # every section, a new one included
            keys |= {f"{f.name}.{g.name}" for g in dataclasses.fields(getattr(Config(), f.name))}
    doc = (Path(__file__).resolve().parent.parent / "docs" / "configuration.md").read_text()
    listed = re.findall(r"^\| `([a-z_.]+)` \|", doc, flags=re.M)
    assert len(listed) == len(set(listed)), "a key is listed twice"
    assert set(listed) == keys, (sorted(keys - set(listed)), sorted(set(listed) - keys))


def test_the_resolved_config_loads_back_to_the_same_config(tmp_path):
    """What a step writes beside its outputs (config.resolved.yaml) is the config it ran with,
    overrides included: a later process loads that file, not the original plus strings."""
    from fewshot.config import save_resolved
    cfg = load_config("configs/demo.yaml", ["data.source=mine.csv", "report.targets=[0.55]"])
    p = save_resolved(cfg, tmp_path)
    back = load_config(p)
    assert back.hash() == cfg.hash() and back.data.source == "mine.csv" and back.report.targets == [0.55]


def test_every_shipped_config_loads():
    """Each study, the bench's paper-size run included, is a config file that loads and validates."""
    from pathlib import Path
    names = sorted(p.name for p in Path("configs").glob("*.yaml"))
    assert {"demo.yaml", "demo_3seeds.yaml", "paper.yaml", "paper_debian.yaml"} <= set(names)
    for n in names:
        load_config(f"configs/{n}")


def test_shipped_configs_on_the_debian_set_say_what_to_do_with_its_straddling_duplicates():
    """The shipped Debian set's given splits share 15 near-duplicate groups (docs/audit.md): under the
    default data.duplicates=group the data step stops on them, so every shipped config that studies
    that set must keep or drop them (paper_debian.yaml and demo_3seeds.yaml once did neither)."""
    from pathlib import Path
    for p in sorted(Path("configs").glob("*.yaml")):
        cfg = load_config(str(p))
        if cfg.data.source == "debian":
            assert cfg.data.duplicates in ("keep", "drop"), f"{p}: data.duplicates is {cfg.data.duplicates!r}"
