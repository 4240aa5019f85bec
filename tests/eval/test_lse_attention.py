"""eval/lse_attention.py: attention with each query's log-sum-exp, the kernel of the device
against the plain formula, and the split attention's merge through any of them."""

from __future__ import annotations

import pytest
import torch

import eval.attention as attention
from bench import gpu_split
from eval import lse_attention


@pytest.mark.parametrize("dtype, atol", [(torch.float32, 1e-5), (torch.bfloat16, 3e-2)])
def test_the_cpu_kernel_gives_the_formulas_output_and_log_sum_exp(dtype, atol):
    gen = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(2, 3, s, 16, generator=gen).to(dtype) for s in (5, 9, 9))
    bias = torch.zeros(2, 1, 5, 9).masked_fill(torch.rand(2, 1, 5, 9, generator=gen) > 0.6, -1e9)
    bias[..., 0] = 0.0  # every query sees a key
    out, lse = lse_attention.attend(q, k, v, bias.to(dtype), 0.3)
    want_out, want_lse = lse_attention.reference(q, k, v, bias.to(dtype), 0.3)
    assert out.dtype == dtype and lse.dtype == torch.float32 and lse.shape == (2, 3, 5)
    assert torch.allclose(out.float(), want_out, atol=atol)
    assert torch.allclose(lse, want_lse, atol=atol * 10)


def test_reference_gives_a_query_that_sees_no_key_zero_and_minus_infinity():
    q, k, v = torch.randn(1, 1, 2, 4), torch.randn(1, 1, 3, 4), torch.randn(1, 1, 3, 4)
    bias = torch.zeros(1, 1, 2, 3)
    bias[0, 0, 1] = float("-inf")
    out, lse = lse_attention.reference(q, k, v, bias, None)
    assert torch.equal(out[0, 0, 1], torch.zeros(4)) and lse[0, 0, 1] == float("-inf")
    assert torch.isfinite(lse[0, 0, 0])


@pytest.mark.parametrize("keys", [1, 7, 16, 33])
def test_aligned_bias_keeps_its_values_in_rows_the_cuda_kernel_can_read(keys):
    bias = torch.randn(2, 1, 3, keys)
    got = lse_attention.aligned(bias)
    assert torch.equal(got, bias)
    assert got.stride(-2) % lse_attention.ALIGN == 0 and got.stride(-1) == 1


@pytest.mark.parametrize("case", gpu_split.CASES)
def test_the_merge_is_exact_through_any_kernel(case, monkeypatch):
    """split_sdpa's merge does not depend on which kernel gave each part: with the formula
    standing in for the device's kernel (as on a device without one) the result is the same."""
    monkeypatch.setattr(
        lse_attention,
        "attend",
        lambda q, k, v, b, s: (lambda o, lse: (o.to(q.dtype), lse))(
            *lse_attention.reference(q, k, v, b, s)
        ),
    )
    q, pk, pv, ok, ov, mask = gpu_split.case_tensors(case, torch.float32, "cpu")
    got = attention.split_sdpa(q, gpu_split.prefix_layer(pk, pv, ok, ov), mask, 0.25)
    want = gpu_split.whole_row(q, pk, pv, ok, ov, mask, 0.25)
    assert (got - want).abs().max() < 2e-6


def test_the_gpu_checks_agreement_holds_on_the_cpu():
    """bench/gpu_check.py's `split` phase runs this on CUDA; here it holds on the CPU kernel."""
    got = gpu_split.agreement("cpu")
    assert got.pop("ok") is True
    assert set(got) == {f"{d}_{c}" for d in ("fp32", "bf16") for c in gpu_split.CASES}


def test_share_takes_caches_only_on_devices_with_a_kernel():
    assert lse_attention.supported(torch.device("cpu"))
    assert lse_attention.supported(torch.device("cuda"))
    assert not lse_attention.supported(torch.device("meta"))
