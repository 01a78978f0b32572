"""The single definition of what the model sees, shared by the data builder (training files)
and the evaluation client (served requests), so the two cannot drift apart.

Layout, the same on both sides: the classifier instruction is the *system* turn, the document
is the one *user* turn, the label name is the assistant turn. LLaMA-Factory gets it through
`dataset_info.json` (columns system=instruction, prompt=input); the client sends
SystemMessage(instruction) + HumanMessage(input). An explicit system turn also stops SmolLM2's
chat template from inserting its own default system prompt.
"""
from __future__ import annotations

INPUT_PREFIX = "Classify the document:\n"

# LLaMA-Factory column mapping for our Alpaca files (see module docstring).
ALPACA_COLUMNS = {"system": "instruction", "prompt": "input", "response": "output"}


def build_instruction(labels: list[str]) -> str:
    """Classifier prompt listing exactly the data's own labels (no invented 'Unknown')."""
    listed = "\n".join(f'"{name}"' for name in labels)
    return (
        "You are a document classifier. When given the text, you classify the text into one of "
        f"the following categories:\n\n{listed}\n\n"
        "Your output should only contain one of the categories and no explanation or any other text."
    )


def build_input(text: str) -> str:
    return INPUT_PREFIX + text


def strip_input(model_input: str) -> str:
    """Recover the raw text from an Alpaca `input` (baselines train on the raw text)."""
    return model_input[len(INPUT_PREFIX):] if model_input.startswith(INPUT_PREFIX) else model_input


def alpaca_row(instruction: str, text: str, label: str) -> dict:
    return {"instruction": instruction, "input": build_input(text), "output": label}


def chat_messages(row: dict, demos: list[dict] | None = None) -> list[dict]:
    """OpenAI-style messages for one Alpaca row, exactly as LLaMA-Factory trains on it; with demos
    (in-context learning), each demonstration row is an earlier user turn answered by its label,
    between the system turn and the row."""
    msgs = [{"role": "system", "content": row["instruction"]}]
    for d in demos or ():
        msgs += [{"role": "user", "content": d["input"]}, {"role": "assistant", "content": d["output"]}]
    return msgs + [{"role": "user", "content": row["input"]}]
