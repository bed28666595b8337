"""The fused Triton LIF scan equals the PyTorch scan: spikes (but for threshold ties), membranes
through the spikes, gradients within float tolerance. Checked on CUDA where there is one, and
everywhere through Triton's CPU interpreter (in a child process: the interpreter is chosen when
Triton's kernels are defined)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from models.lif import lif_scan

triton = pytest.importorskip("triton", reason="Triton comes with CUDA builds of torch only")

ROOT = Path(__file__).resolve().parents[2]

CHECK = textwrap.dedent(
    """
    import torch
    from models import build_model
    from models import lif
    from models.lif_triton import available, fused_lif_scan

    torch.manual_seed(0)
    # 30 frames x 200 neurons (not a multiple of the 128-neuron block), drive around threshold
    x = (torch.randn(30, 4, 50) * 1.5 + 0.8).requires_grad_()
    assert available(x) and not available(x.double())
    ref = lif.lif_scan(x, 2.0, 1.0)
    out = fused_lif_scan(x, 2.0, 1.0)
    # membranes before firing, to tell a tie from a real difference
    with torch.no_grad():
        v, charged = torch.zeros_like(x[0]), []
        for t in range(x.shape[0]):
            _, v, h = lif.lif_step(v, x[t], 2.0, 1.0)
            charged.append(h)
        near = (torch.stack(charged) - 1.0).abs() < 1e-5
    assert out.shape == x.shape and out.dtype == x.dtype
    assert ((out != ref) & ~near).sum() == 0
    grad = torch.randn_like(ref)
    (want,) = torch.autograd.grad(ref, x, grad)
    (got,) = torch.autograd.grad(out, x, grad)
    assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), (got - want).abs().max()
    with torch.no_grad():  # no graph, same spikes
        assert torch.equal(fused_lif_scan(x, 2.0, 1.0), out)
    assert fused_lif_scan(torch.zeros(0, 3), 2.0, 1.0).shape == (0, 3)
    import inspect
    assert inspect.signature(fused_lif_scan).parameters['alpha'].default == lif.SURROGATE_ALPHA

    # a whole spiking model: the layers' scan swapped for the fused one
    for name in ("spiking-lmuformer", "spiking-lmu"):
        torch.manual_seed(1)
        model = build_model(name, dim=16, num_classes=4).train()
        feats = torch.randn(3, 20, 128)
        scan = lif.lif_scan
        logits = model(feats)
        want = torch.autograd.grad(logits.square().sum(), list(model.parameters()))
        lif.lif_scan = fused_lif_scan
        try:
            fused = model(feats)
            got = torch.autograd.grad(fused.square().sum(), list(model.parameters()))
        finally:
            lif.lif_scan = scan
        assert torch.allclose(fused, logits, atol=1e-4), (fused - logits).abs().max()
        for g, w in zip(got, want):
            assert torch.allclose(g, w, atol=1e-4, rtol=1e-3), (g - w).abs().max()
    print("fused LIF ok")
    """
)


def test_fused_scan_equals_the_scan_in_the_interpreter() -> None:
    env = {**os.environ, "TRITON_INTERPRET": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-c", CHECK], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    assert "fused LIF ok" in done.stdout


def test_not_available_on_the_cpu_without_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    from models import lif_triton

    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    x = torch.randn(5, 3)
    assert not lif_triton.available(x)
    with pytest.raises(RuntimeError, match="Triton"):
        lif_triton.fused_lif_scan(x)
    # and the model's scan does not try it
    assert torch.equal(lif_scan(x), lif_scan(x.clone()))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_fused_scan_on_cuda_equals_the_cpu_scan(monkeypatch: pytest.MonkeyPatch) -> None:
    from models import lif_triton

    torch.manual_seed(0)
    x = (torch.randn(100, 32, 256) * 1.5 + 0.8).requires_grad_()
    xc = x.detach().cuda().requires_grad_()
    assert lif_triton.available(xc)
    ref = lif_scan(x, 2.0, 1.0)
    out = lif_scan(xc, 2.0, 1.0)  # dispatches to the fused kernels
    assert (out.cpu() != ref).float().mean() < 1e-4  # ties only
    grad = torch.randn_like(ref)
    (want,) = torch.autograd.grad(ref, x, grad)
    (got,) = torch.autograd.grad(out, xc, grad.cuda())
    assert torch.allclose(got.cpu(), want, atol=1e-4, rtol=1e-3)
    monkeypatch.setenv("LMUKWS_FUSED_LIF", "0")
    assert not lif_triton.available(xc)
