"""Scripts that run inside the training environment (.venv-train: LLaMA-Factory and the transformers it
pins), started as subprocesses by the main environment or by setup.sh: the trainer launcher
(`lf_train`), greedy generation for tests (`lf_generate`) and the model conversion (`convert_gguf`).
Of ours they import only `fewshot.prompt`, which needs nothing beyond the standard library."""
