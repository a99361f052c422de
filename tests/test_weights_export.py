"""Every finished trial keeps its model (_weights/<trial_id>/), and `scaling export` turns it into a
Hugging Face Llama folder (llama) or reloadable weights (gpt2) whose logits equal ours, with the
tokenizer beside it. Tiny models trained for 2 steps, a results folder without Ray."""

from __future__ import annotations

import json

import pytest
import torch

from scaling_orchestrator.cli.study import main
from scaling_orchestrator.models.data.tokens import DataSpec, prepare_data
from scaling_orchestrator.models.export import validation_tokens
from scaling_orchestrator.models.shape import ModelShape
from scaling_orchestrator.models.training.loop import TrainConfig, train
from scaling_orchestrator.models.weights import load_model
from scaling_orchestrator.orchestrator.spec.trial import TrialSpec
from scaling_orchestrator.orchestrator.store.results import Store
from scaling_orchestrator.orchestrator.store.status import status_text
from scaling_orchestrator.orchestrator.store.weights import keep_final_weights, kept_weights

LLAMA = dict(n_layer=2, d_model=32, n_head=4, n_kv_heads=2, vocab_size=512, seq_len=32, block="llama")
GPT2 = dict(n_layer=2, d_model=32, n_head=2, vocab_size=512, seq_len=32)


def finished_trial(tmp_path, token_cache_dir, shape_fields: dict, tokenizer: str = "bpe",
                   **train_fields) -> tuple[TrialSpec, Store]:
    """A trial trained 2 steps on pydoc (512-token BPE, or bytes), its weights kept as the worker
    keeps them."""
    vocab = 512 if tokenizer == "bpe" else 256
    data = DataSpec(corpus="pydoc", tokenizer=tokenizer, vocab_size=vocab, cache_dir=str(token_cache_dir))
    shape = ModelShape(**{**shape_fields, "vocab_size": vocab})
    config = TrainConfig(total_tokens=256, batch_tokens=128, eval_tokens=64, threads=1, device="cpu",
                         lr=1e-2, **train_fields)
    spec = TrialSpec(sweep="t", kind="scaling", shape=shape, data=data, train=config, budget_flops=1e9)
    store = Store(str(tmp_path / "results"))
    torch.manual_seed(0)
    train(shape, config, prepare_data(data), checkpoint_dir=str(tmp_path / "ckpt"))
    keep_final_weights(spec, store, str(tmp_path / "ckpt"))
    return spec, store


@pytest.mark.slow  # transformers' import and a LlamaForCausalLM: about 12 s
def test_llama_exports_to_transformers_with_our_logits_and_tokenizer(tmp_path, token_cache_dir, capsys):
    transformers = pytest.importorskip("transformers")
    spec, store = finished_trial(tmp_path, token_cache_dir, LLAMA)
    folder = store.read_meta(spec.trial_id)["weights"]
    assert folder.endswith(f"_weights/{spec.trial_id}") and spec.trial_id in kept_weights(store)
    config = json.loads((tmp_path / "results" / "_weights" / spec.trial_id / "config.json").read_text())
    assert config["block"] == "llama" and config["tokenizer"]["vocab_size"] == 512
    out = tmp_path / "hf"
    assert main(["export", store.uri, spec.trial_id, "--out", str(out)]) == 0
    assert "huggingface llama" in capsys.readouterr().out
    theirs = transformers.AutoModelForCausalLM.from_pretrained(str(out)).eval()
    assert type(theirs).__name__ == "LlamaForCausalLM"
    ours, _ = load_model(folder)
    tokens = validation_tokens(folder)
    assert tokens.shape == (1, 32)
    with torch.no_grad():
        assert torch.allclose(ours(tokens)[0], theirs(tokens).logits, atol=1e-4, rtol=0)
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(out))
    document = "def spam(eggs):\n    return {'ham': eggs}  # naïve ünïcode\n"
    assert tokenizer.decode(tokenizer(document)["input_ids"]) == document
    assert "weights: 1 models kept" in status_text(store.uri)


@pytest.mark.slow  # transformers' import
def test_mup_multipliers_fold_into_the_exported_weights(tmp_path, token_cache_dir):
    """mup's attention scale (base head 4 of 8: sqrt(4)/8, not 1/sqrt(8)) and logit multiplier
    1/m (m = 2) have no place in LlamaConfig: folded into q_proj and lm_head, the logits agree."""
    transformers = pytest.importorskip("transformers")
    fields = {**LLAMA, "parametrization": "mup", "base_d_model": 16, "base_head_dim": 4}
    spec, store = finished_trial(tmp_path, token_cache_dir, fields, "byte")
    assert spec.shape.output_multiplier == 0.5 and spec.shape.attention_scale == 0.25
    assert main(["export", store.uri, spec.trial_id, "--out", str(tmp_path / "hf")]) == 0
    theirs = transformers.AutoModelForCausalLM.from_pretrained(str(tmp_path / "hf")).eval()
    folder = store.read_meta(spec.trial_id)["weights"]
    ours, tokens = load_model(folder)[0], validation_tokens(folder)
    with torch.no_grad():
        assert torch.allclose(ours(tokens)[0], theirs(tokens).logits, atol=1e-4, rtol=0)


@pytest.mark.slow  # the tokenizer is saved through transformers: its import is seconds
def test_gpt2_exports_weights_our_package_reloads(tmp_path, token_cache_dir):
    pytest.importorskip("transformers")
    spec, store = finished_trial(tmp_path, token_cache_dir, GPT2)
    out = tmp_path / "out"
    assert main(["export", store.uri, spec.trial_id, "--out", str(out)]) == 0
    ours, _ = load_model(store.read_meta(spec.trial_id)["weights"])
    again, config = load_model(out)
    assert config["block"] == "gpt2" and again.lm_head.weight is again.token_embedding.weight  # tied
    tokens = validation_tokens(out)
    with torch.no_grad():
        assert torch.equal(ours(tokens)[0], again(tokens)[0])
    assert (out / "tokenizer.json").is_file()


@pytest.mark.slow  # transformers' import
def test_byte_tokenizer_round_trips_as_its_token_ids(tmp_path, token_cache_dir):
    transformers = pytest.importorskip("transformers")
    spec, store = finished_trial(tmp_path, token_cache_dir, GPT2, "byte")
    assert main(["export", store.uri, spec.trial_id, "--out", str(tmp_path / "out")]) == 0
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(tmp_path / "out"))
    document = "naïve café: 10 €\n"
    assert tokenizer(document)["input_ids"] == list(document.encode("utf-8"))
    assert tokenizer.decode(tokenizer(document)["input_ids"]) == document


def test_what_is_not_kept_or_not_exported_says_why(tmp_path, token_cache_dir, capsys):
    spec, store = finished_trial(tmp_path, token_cache_dir, {**LLAMA, "qk_norm": True}, "byte")
    assert main(["export", store.uri, spec.trial_id, "--out", str(tmp_path / "x")]) == 2
    error = capsys.readouterr().err
    assert len(error.strip().splitlines()) == 1 and "qk_norm: true has no Hugging Face Llama" in error
    none, store = finished_trial(tmp_path / "n", token_cache_dir, GPT2, "byte", keep_weights="none")
    assert none.trial_id == TrialSpec.from_dict({**none.to_dict(), "train": {**none.to_dict()["train"],
                                                 "keep_weights": "final"}}).trial_id  # not in the identity
    assert kept_weights(store) == {} and "keep_weights is none" in store.read_meta(none.trial_id)["weights"]
    assert main(["export", store.uri, none.trial_id, "--out", str(tmp_path / "y")]) == 2
    assert "no kept weights" in capsys.readouterr().err
