"""Model folders for proving vLLM on the GPU machine, where no model hub is
reachable: each is a real architecture's config.json (read with vLLM's
`--load-format dummy`, i.e. random weights of the real shapes) and one small
byte-level BPE tokenizer built here with the `tokenizers` library, with a
ChatML chat template in tokenizer_config.json (hack/test_models.py).

    .venv/bin/python hack/device-vllm-models.py OUTDIR

needs `tokenizers` (in .venv: make setup). Writes
OUTDIR/tokenizer/ and OUTDIR/<model>/ for each model below; deterministic
(the tokenizer is trained on this repository's docs/*.md, sorted)."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "hack"))
from test_models import build_tokenizer  # noqa: E402  pylint: disable=wrong-import-position

CONFIGS = ROOT / "tests/unit/plugins/module_utils/serving/model_configs"
# served model folder name -> config.json: published ones (see model_configs/), the example inventory's
# Qwen3-235B-A22B (its folder as vllm_serve mounts it: /models/qwen3-235b), and that shape with 2 KV
# heads (tests/data/real-vllm/configs/: fewer KV heads than the 4 GPUs, as 4 heads are on 8).
MODELS = {
    "qwen2.5-7b-instruct": CONFIGS / "qwen2.5-7b-instruct.json",
    "qwen3-30b-a3b": CONFIGS / "qwen3-30b-a3b.json",
    "qwen2.5-0.5b-instruct": CONFIGS / "qwen2.5-0.5b-instruct.json",
    "qwen3-235b": ROOT / "inventories/example/files/qwen3-235b-a22b-instruct-2507.config.json",
    "qwen3-235b-kv2": ROOT / "tests/data/real-vllm/configs/qwen3-235b-a22b-kv2.config.json",
    # Qwen3-30B-A3B with 8 of its 48 layers (not a published model): the MoE's per-step memory at a
    # tenth of the weights, so that several calibration runs share the one GPU in HAMi slices.
    "qwen3-30b-a3b-l8": ROOT / "tests/data/real-vllm/configs/qwen3-30b-a3b-l8.config.json",
}


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else ROOT / ".device/models")
    build_tokenizer(out / "tokenizer")
    for name, config in MODELS.items():
        model = out / name
        model.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(config, model / "config.json")
        for f in (out / "tokenizer").iterdir():
            shutil.copyfile(f, model / f.name)
    # The pooling model: its own files (sentence-transformers layout: modules.json and 1_Pooling tell vLLM
    # it is an embedding model), without its weights (--load-format dummy).
    embed_src, embed = ROOT / ".cache/test-models/all-minilm-l6-v2", out / "all-minilm-l6-v2"
    for f in embed_src.rglob("*"):
        if f.is_file() and f.suffix != ".safetensors" and not f.name.startswith("."):
            target = embed / f.relative_to(embed_src)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(f, target)
    print(f"models in {out}: {', '.join(MODELS)}, all-minilm-l6-v2")


if __name__ == "__main__":
    main()
