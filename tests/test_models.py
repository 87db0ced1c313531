import pytest
import torch

from calibkit import models


def test_tiny_models_are_seeded_and_small():
    a = models.tiny_model("tiny-llama", seed=0)
    b = models.tiny_model("tiny-llama", seed=0)
    c = models.tiny_model("tiny-llama", seed=1)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert type(a).__name__ == "LlamaForCausalLM" and a.config.num_hidden_layers == 2


@pytest.mark.parametrize("arch", ["tiny-qwen2", "tiny-mistral"])
def test_other_tiny_architectures(arch):
    m = models.tiny_model(arch, vocab_size=128)
    out = m(torch.randint(0, 128, (1, 8)))
    assert out.logits.shape == (1, 8, 128)


def test_load_model_tiny_comes_with_tokenizer():
    model, tok = models.load_model("tiny-llama", dtype="bfloat16")
    assert model.dtype == torch.bfloat16 and len(tok) >= model.config.vocab_size - 64


def test_unknown_names_fail_clearly(tmp_path):
    with pytest.raises(models.ModelLoadError, match="no-such-dir does not exist"):  # a path, not a hub id
        models.load_model(str(tmp_path / "no-such-dir"))
    (tmp_path / "weights.bin").write_text("x")
    with pytest.raises(models.ModelLoadError, match="is a file, not a checkpoint folder"):
        models.load_model(str(tmp_path / "weights.bin"))
    with pytest.raises(ValueError, match="unknown dtype"):
        models.load_model("tiny-llama", dtype="int3")


@pytest.mark.real_model
def test_embedded_model_is_a_real_llama():
    model, tok = models.load_model("smollm2-135m")
    assert type(model).__name__ == "LlamaForCausalLM"
    n = sum(p.numel() for p in model.parameters())
    assert 134_000_000 < n < 135_000_000  # 134,515,008 with tied embeddings
    assert next(model.parameters()).dtype == torch.float32
    ids = tok("The capital of France is", return_tensors="pt")
    with torch.no_grad():
        out = model.generate(**ids, max_new_tokens=3, do_sample=False)
    assert "Paris" in tok.decode(out[0])
    assert (models.embedded_checkpoint() / "model.safetensors").is_file()
