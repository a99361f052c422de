"""`scaling export`: a kept model (models/weights.py) as a folder other tools load.

llama -> a Hugging Face Llama folder (config.json as LlamaConfig, model.safetensors in its
names), so `transformers.AutoModelForCausalLM.from_pretrained(DIR)` computes our logits.
The names map one to one, with our fused matrices split: attn.qkv rows [d, kv, kv] -> q_proj,
k_proj, v_proj; mlp.fc rows [d_ff, d_ff] -> gate_proj, up_proj; the rotary layout is already HF's
rotate-half, so nothing is permuted. μP's multipliers are folded into weights: the attention
scale sqrt(base_head_dim)/d_head against HF's 1/sqrt(d_head) into q_proj (a linear map before
the rotation, so it commutes), the logit multiplier 1/m into an untied lm_head. What HF's Llama
cannot express is refused in one line: QK-norm (LlamaConfig has no such option) and μP's logit
multiplier on a tied head.
gpt2 -> our own model.safetensors and config.json, which models.weights.load_model reloads.

Either way the tokenizer is saved beside (tokenizer.json through PreTrainedTokenizerFast), so
`AutoTokenizer.from_pretrained(DIR)` encodes as training did: the corpus's BPE (the prepared
corpus's tokenizer.json) or a tokenizer.json the spec names, or the 256 raw bytes as a byte-level BPE
without merges. transformers is the `export` extra, imported only here.
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from scaling_orchestrator.models.data.prepare import prepared_folder
from scaling_orchestrator.models.data.tokenizer import is_tokenizer_file
from scaling_orchestrator.models.data.tokens import DataSpec, prepare_data
from scaling_orchestrator.models.llama import RMS_EPS
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.models.weights import CONFIG_FILE, WEIGHTS_FILE, load_model, read_config

EXTRA = "export"  # pip install "scaling-orchestrator[export]"


def transformers_module():
    try:
        # transformers is the `export` extra: loaded only to export, never by training
        import transformers
    except ImportError:
        raise ValueError(f"scaling export needs transformers: pip install 'scaling-orchestrator[{EXTRA}]'")
    return transformers


def refusal(shape: ModelShape) -> str | None:
    """Why a llama shape has no Hugging Face Llama equivalent, or None."""
    if shape.qk_norm:
        return "model.qk_norm: true has no Hugging Face Llama equivalent (LlamaConfig has no QK-norm)"
    if shape.tied_embeddings and shape.output_multiplier != 1.0:
        return "mup's logit multiplier on a tied head has no Hugging Face Llama equivalent"
    return None


def llama_config(shape: ModelShape):
    """LlamaConfig of the same network: no biases, SiLU-gated MLP, our RMSNorm eps and rotary base."""
    return transformers_module().LlamaConfig(
        vocab_size=shape.vocab_size, hidden_size=shape.d_model, intermediate_size=shape.d_ff,
        num_hidden_layers=shape.n_layer, num_attention_heads=shape.n_head,
        num_key_value_heads=shape.kv_heads, head_dim=shape.head_dim, hidden_act="silu",
        max_position_embeddings=shape.seq_len, rms_norm_eps=RMS_EPS,
        rope_parameters={"rope_type": "default", "rope_theta": float(shape.rope_theta)},
        tie_word_embeddings=shape.tied_embeddings, attention_bias=False, mlp_bias=False,
        bos_token_id=None, eos_token_id=None, pad_token_id=None,
    )


def llama_state(state: dict[str, torch.Tensor], shape: ModelShape) -> dict[str, torch.Tensor]:
    """Our llama's tensors under Hugging Face LlamaForCausalLM's names (module doc)."""
    d, kv, f = shape.d_model, shape.kv_heads * shape.head_dim, shape.d_ff
    q_scale = shape.attention_scale * math.sqrt(shape.head_dim)  # 1 under standard
    out = {"model.embed_tokens.weight": state["token_embedding.weight"],
           "model.norm.weight": state["ln_final.weight"]}
    for i in range(shape.n_layer):
        ours, theirs = f"blocks.{i}.", f"model.layers.{i}."
        q, k, v = state[ours + "attn.qkv.weight"].split([d, kv, kv])
        gate, up = state[ours + "mlp.fc.weight"].split([f, f])
        out |= {
            theirs + "input_layernorm.weight": state[ours + "ln_attn.weight"],
            theirs + "self_attn.q_proj.weight": q * q_scale,
            theirs + "self_attn.k_proj.weight": k,
            theirs + "self_attn.v_proj.weight": v,
            theirs + "self_attn.o_proj.weight": state[ours + "attn.proj.weight"],
            theirs + "post_attention_layernorm.weight": state[ours + "ln_mlp.weight"],
            theirs + "mlp.gate_proj.weight": gate,
            theirs + "mlp.up_proj.weight": up,
            theirs + "mlp.down_proj.weight": state[ours + "mlp.proj.weight"],
        }
    if not shape.tied_embeddings:
        out["lm_head.weight"] = state["lm_head.weight"] * shape.output_multiplier
    return {name: t.detach().to(torch.float32).contiguous() for name, t in out.items()}


def export_model(weights_folder: str | Path, out_dir: str | Path) -> dict:
    """Write the Hugging Face (llama) or own-format (gpt2) folder and its tokenizer; returns
    {"format", "tokenizer"} saying what was written."""
    config = read_config(weights_folder)
    shape = ModelShape(**config["shape"])
    out = Path(out_dir)
    if shape.block == "llama":
        why = refusal(shape)
        if why:
            raise ValueError(f"scaling export: {why}; the trial's weights stay in {weights_folder}")
        transformers_module()
        model, _ = load_model(weights_folder)
        out.mkdir(parents=True, exist_ok=True)
        llama_config(shape).save_pretrained(out)
        save_file(llama_state(model.state_dict(), shape), str(out / WEIGHTS_FILE), metadata={"format": "pt"})
        kind = "huggingface llama"
    else:
        out.mkdir(parents=True, exist_ok=True)
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            shutil.copyfile(Path(weights_folder) / name, out / name)
        kind = "scaling-orchestrator gpt2 (scaling_orchestrator.models.weights.load_model)"
    return {"format": kind, "tokenizer": save_tokenizer(config.get("tokenizer"), out)}


def save_tokenizer(reference: dict | None, out: Path) -> str:
    """The trial's tokenizer beside the model, as a PreTrainedTokenizerFast; what was saved."""
    if not reference:
        return "none (no tokenizer reference in config.json)"
    spec = DataSpec(**reference)
    if spec.pretokenized:
        return f"none ({spec.corpus} holds token ids: no tokenizer made them here)"
    fast = transformers_module().PreTrainedTokenizerFast(
        tokenizer_object=tokenizer_for(spec), clean_up_tokenization_spaces=False
    )
    fast.save_pretrained(out)
    return f"{spec.tokenizer} ({spec.effective_vocab_size} tokens)"


def tokenizer_for(spec: DataSpec):
    """The `tokenizers` object that made the trial's tokens (module doc)."""
    if spec.tokenizer == "byte":
        byte_chars = _bytes_to_unicode()
        tokenizer = Tokenizer(models.BPE(vocab={byte_chars[b]: b for b in range(256)}, merges=[]))
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
        tokenizer.decoder = decoders.ByteLevel()
        return tokenizer
    if is_tokenizer_file(spec.tokenizer):
        return Tokenizer.from_file(str(Path(spec.tokenizer).expanduser()))
    prepare_data(spec)  # a no-op once prepared: the trained bpe is the prepared folder's tokenizer.json
    return Tokenizer.from_file(str(prepared_folder(spec) / "tokenizer.json"))


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character table, the ByteLevel pre-tokenizer's alphabet."""
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    extra = [b for b in range(256) if b not in printable]
    chars = {b: chr(b) for b in printable} | {b: chr(256 + i) for i, b in enumerate(extra)}
    return dict(sorted(chars.items()))


def logits_difference(weights_folder: str | Path, out_dir: str | Path, tokens: torch.Tensor) -> float:
    """Max |our logits - the exported model's| on tokens (1, seq): the export's check."""
    ours, config = load_model(weights_folder)
    if config["block"] == "llama":
        theirs = transformers_module().AutoModelForCausalLM.from_pretrained(str(out_dir)).eval()
        run = lambda idx: theirs(idx).logits  # noqa: E731
    else:
        theirs, _ = load_model(out_dir)
        run = lambda idx: theirs(idx)[0]  # noqa: E731
    with torch.no_grad():
        return float((ours(tokens)[0] - run(tokens)).abs().max())


def validation_tokens(weights_folder: str | Path) -> torch.Tensor | None:
    """The first seq_len of the trial's validation tokens, (1, seq_len); None without a reference."""
    config = read_config(weights_folder)
    if not config.get("tokenizer"):
        return None
    val = prepare_data(DataSpec(**config["tokenizer"])).val[: config["shape"]["seq_len"]]
    return torch.from_numpy(val.astype("int64"))[None, :]


__all__ = ["export_model", "llama_config", "llama_state", "logits_difference", "refusal", "tokenizer_for",
           "validation_tokens"]
