"""Models made here, where no model hub is reachable.

- The tokenizer: a small byte-level BPE trained with the `tokenizers`
  library on this repository's docs, with a ChatML chat template in
  tokenizer_config.json (as Qwen's are written). hack/device-vllm's model
  folders use it with real architectures' config.json.
- The sandbox's model (tiny-chat): a real generative architecture
  (Qwen2ForCausalLM, which vLLM serves for chat) at a tiny size, with that
  tokenizer and random weights in model.safetensors, written with the
  `safetensors` library: what the sandbox seeds into its S3 server and
  site.yml deploys, so that the stand-in serves chat for a model vLLM would
  serve chat for.

    python hack/test_models.py tiny-chat OUTDIR
    python hack/test_models.py tokenizer OUTDIR

Deterministic for a given docs/ (the tokenizer's corpus) and seed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2
VOCAB = 1024
# ChatML, as Qwen's templates write it (no tools, no thinking).
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# Qwen2ForCausalLM at a tiny size (config keys as transformers' Qwen2Config).
TINY_CHAT_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"],
    "model_type": "qwen2",
    "hidden_size": 64,
    "intermediate_size": 128,
    "num_hidden_layers": 2,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 4096,
    "rms_norm_eps": 1e-06,
    "rope_theta": 10000.0,
    "tie_word_embeddings": True,
    "torch_dtype": "float32",
    "use_sliding_window": False,
    "sliding_window": None,
    "attention_dropout": 0.0,
    "vocab_size": VOCAB,
    "bos_token_id": 0,
    "eos_token_id": 2,
}


def build_tokenizer(out: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIAL, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    texts = [p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md"))]
    tok.train_from_iterator(texts, trainer=trainer)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "model_max_length": 32768,
        "clean_up_tokenization_spaces": False,
        "chat_template": CHAT_TEMPLATE,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "special_tokens_map.json").write_text(json.dumps(
        {"eos_token": "<|im_end|>", "pad_token": "<|endoftext|>"}, indent=2) + "\n")


def tiny_chat_tensors(config: dict, seed: int = 0) -> dict:
    """Qwen2's tensor names and shapes (transformers' modeling_qwen2: q/k/v
    projections with bias, o_proj without; gated MLP; RMSNorm weights; the
    LM head tied to the embeddings, so not stored)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    hidden, inter = config["hidden_size"], config["intermediate_size"]
    head_dim = hidden // config["num_attention_heads"]
    kv = config["num_key_value_heads"] * head_dim

    def w(*shape):
        return (rng.standard_normal(shape) * 0.02).astype(np.float32)

    tensors = {"model.embed_tokens.weight": w(config["vocab_size"], hidden),
               "model.norm.weight": np.ones(hidden, dtype=np.float32)}
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}."
        tensors.update({
            p + "input_layernorm.weight": np.ones(hidden, dtype=np.float32),
            p + "post_attention_layernorm.weight": np.ones(hidden, dtype=np.float32),
            p + "self_attn.q_proj.weight": w(hidden, hidden), p + "self_attn.q_proj.bias": w(hidden),
            p + "self_attn.k_proj.weight": w(kv, hidden), p + "self_attn.k_proj.bias": w(kv),
            p + "self_attn.v_proj.weight": w(kv, hidden), p + "self_attn.v_proj.bias": w(kv),
            p + "self_attn.o_proj.weight": w(hidden, hidden),
            p + "mlp.gate_proj.weight": w(inter, hidden), p + "mlp.up_proj.weight": w(inter, hidden),
            p + "mlp.down_proj.weight": w(hidden, inter),
        })
    return tensors


def write_tiny_chat(out: Path) -> None:
    from safetensors.numpy import save_file

    build_tokenizer(out)
    (out / "config.json").write_text(json.dumps(TINY_CHAT_CONFIG, indent=2) + "\n")
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": 0, "eos_token_id": 2, "max_new_tokens": 64}, indent=2) + "\n")
    save_file(tiny_chat_tensors(TINY_CHAT_CONFIG), str(out / "model.safetensors"), metadata={"format": "pt"})


def main() -> int:
    if len(sys.argv) != 3 or sys.argv[1] not in ("tiny-chat", "tokenizer"):
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(sys.argv[2])
    if sys.argv[1] == "tiny-chat":
        write_tiny_chat(out)
    else:
        build_tokenizer(out)
    print(f"{sys.argv[1]} written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
