"""GPU only: the generated Triton gate kernel against eager PyTorch, compiled for a real GPU.

The CPU test suite checks the kernel under TRITON_INTERPRET=1; this script checks the same
kernel compiled for the GPU: forward values and both gradients, elementwise and headwise
gates, sigmoid and SiLU, fp32/bf16/fp16, and shapes whose rows and head sizes are not
multiples of the kernel's block sizes. The reference is computed in fp32 from the same
inputs. Prints one line per case and exits 1 on any mismatch. Without a GPU it says so.

    python benchmarks/gpu_kernel_check.py
"""

from __future__ import annotations

import itertools
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 2e-2, torch.float16: 2e-3}


def reference(y: torch.Tensor, logits: torch.Tensor, activation: str) -> torch.Tensor:
    gate = torch.sigmoid(logits) if activation == "sigmoid" else torch.nn.functional.silu(logits)
    return y * gate


def check(shape: tuple[int, ...], headwise: bool, activation: str, dtype: torch.dtype) -> bool:
    from generated.gated_attention_cuda.kernels import gated_output

    generator = torch.Generator(device="cuda").manual_seed(0)
    y = torch.randn(shape, device="cuda", generator=generator).to(dtype)
    logits_shape = (*shape[:-1], 1) if headwise else shape
    logits = (2 * torch.randn(logits_shape, device="cuda", generator=generator)).to(dtype)
    grad = torch.randn(shape, device="cuda", generator=generator).to(dtype)

    y_kernel, logits_kernel = y.clone().requires_grad_(), logits.clone().requires_grad_()
    out = gated_output(y_kernel, logits_kernel, activation)
    out.backward(grad)

    y_ref, logits_ref = y.float().requires_grad_(), logits.float().requires_grad_()
    expected = reference(y_ref, logits_ref, activation)
    expected.backward(grad.float())

    tol = TOLERANCE[dtype]
    # Headwise logit gradients sum head_dim products: their rounding error grows with it.
    tol_logits = tol * (shape[-1] if headwise and dtype != torch.float32 else 1)
    errors = {
        "out": (out.float() - expected).abs().max().item(),
        "grad_y": (y_kernel.grad.float() - y_ref.grad).abs().max().item(),
        "grad_logits": (logits_kernel.grad.float() - logits_ref.grad).abs().max().item(),
    }
    scale = {
        "out": expected.abs().max().item(),
        "grad_y": y_ref.grad.abs().max().item(),
        "grad_logits": logits_ref.grad.abs().max().item(),
    }
    ok = all(
        errors[k] <= (tol_logits if k == "grad_logits" else tol) * max(1.0, scale[k])
        for k in errors
    )
    gate = "headwise" if headwise else "elementwise"
    worst = ", ".join(f"{k} {v:.2e}" for k, v in errors.items())
    print(f"{'ok  ' if ok else 'FAIL'} {shape} {gate:11s} {activation:7s} {dtype}: {worst}")
    return ok


def main() -> int:
    if not torch.cuda.is_available():
        print("no GPU: nothing to check here (the CPU suite runs the kernel interpreted)")
        return 0
    print(torch.cuda.get_device_name(), "torch", torch.__version__)
    shapes = [(2, 7, 3, 16), (4, 128, 8, 64), (3, 333, 5, 96), (1, 2048, 16, 128), (2, 5, 1, 1)]
    cases = itertools.product(
        shapes, (False, True), ("sigmoid", "silu"), (torch.float32, torch.bfloat16, torch.float16)
    )
    results = [check(*case) for case in cases]
    print(f"{sum(results)} of {len(results)} cases match the eager reference")
    return 0 if all(results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
