"""GPU only: the fused Triton gate kernel vs eager PyTorch, forward + backward.

Compares, on the SDPA output of a realistic attention layer (bf16):
  1. eager gate:        y * torch.sigmoid(logits)
  2. SDPA + eager gate:  scaled_dot_product_attention, then the eager gate
  3. Triton kernel:     generated/gated_attention_cuda/kernels.py `gated_output`
  4. SDPA + kernel
and prints times and ratios measured in one run. Without a GPU it says so and exits 0.

    .venv/bin/python benchmarks/gate_kernel_gpu.py [--batch 16 --length 2048 --heads 16]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def bench(fn, warmup: int = 10, repeats: int = 50) -> float:
    """Median milliseconds of fn() (forward and backward), timed with CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    return sorted(times)[len(times) // 2]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--heads", type=int, default=16)
    parser.add_argument("--head-dim", type=int, default=128)
    args = parser.parse_args()
    if not torch.cuda.is_available():
        print("no GPU: this benchmark needs CUDA (the CPU tests check the kernel's values)")
        return
    from generated.gated_attention_cuda.kernels import gated_output

    shape = (args.batch, args.length, args.heads, args.head_dim)
    dtype, device = torch.bfloat16, "cuda"
    q, k, v = (
        torch.randn(args.batch, args.heads, args.length, args.head_dim, device=device, dtype=dtype)
        for _ in range(3)
    )
    y = torch.randn(*shape, device=device, dtype=dtype, requires_grad=True)
    logits = torch.randn(*shape, device=device, dtype=dtype, requires_grad=True)
    grad = torch.randn(*shape, device=device, dtype=dtype)

    def eager_gate() -> None:
        (y * torch.sigmoid(logits)).backward(grad)

    def kernel_gate() -> None:
        gated_output(y, logits, "sigmoid").backward(grad)

    def sdpa_eager() -> None:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)
        (out * torch.sigmoid(logits)).backward(grad)

    def sdpa_kernel() -> None:
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2)
        gated_output(out, logits, "sigmoid").backward(grad)

    torch.testing.assert_close(
        gated_output(y, logits, "sigmoid"), y * torch.sigmoid(logits), rtol=2e-2, atol=2e-2
    )
    results = {f.__name__: bench(f) for f in (eager_gate, kernel_gate, sdpa_eager, sdpa_kernel)}
    print(f"{torch.cuda.get_device_name()}, shape {shape}, bf16, forward + backward")
    for name, ms in results.items():
        print(f"{name:12s} {ms:8.3f} ms")
    print(
        f"kernel / eager gate:               {results['kernel_gate'] / results['eager_gate']:.3f}"
    )
    print(
        f"(SDPA + kernel) / (SDPA + eager):   {results['sdpa_kernel'] / results['sdpa_eager']:.3f}"
    )


if __name__ == "__main__":
    main()
