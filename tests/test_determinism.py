"""The same inputs give the same mask whatever the thread count (a source of drift between machines, issue
"The committed study does not reproduce"): measured to flip 0.65 % of SparseGPT's mask entries between 1 and 2
threads when the inverse Hessian was factorised in float32 (LAPACK's blocked Cholesky depends on the threads)."""
import pytest
import torch
from calibkit.models import tiny_model
from calibkit.prune import prune


def _pruned(method: str, threads: int, sparsity: str) -> list[torch.Tensor]:
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = tiny_model("tiny-llama", hidden_size=256, intermediate_size=688, num_attention_heads=8,
                           num_key_value_heads=4, num_hidden_layers=2)
        ids = torch.randint(0, 49152, (8, 128), generator=torch.Generator().manual_seed(0))
        prune(model, ids, method, sparsity, progress=False, device="cpu")
    finally:
        torch.set_num_threads(before)
    return [p.detach().clone() for n, p in model.named_parameters() if "layers" in n and p.ndim == 2]


@pytest.mark.parametrize("method, sparsity", [("sparsegpt", "0.5"), ("sparsegpt", "2:4"), ("wanda", "0.5")])
def test_masks_do_not_depend_on_the_thread_count(method, sparsity):
    one, two = _pruned(method, 1, sparsity), _pruned(method, 2, sparsity)
    for a, b in zip(one, two):
        assert torch.equal(a == 0, b == 0)  # the same mask
        assert torch.allclose(a, b, rtol=1e-6, atol=1e-7)  # the same weights up to the last bits of float32 sums
