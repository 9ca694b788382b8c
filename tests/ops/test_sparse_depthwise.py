"""The C++ depthwise kernel at chosen positions against torch's depthwise convolution, forward
and both gradients, and its checks of shapes and positions."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cxrfast import _C
from cxrfast.ops.sparse_depthwise import depthwise_backward, depthwise_forward


@pytest.mark.parametrize("kernel,stride,dilation,channels", [(7, 1, 1, 96), (3, 2, 1, 5), (3, 1, 2, 130)])
def test_kernel_equals_torch_depthwise(kernel, stride, dilation, channels):
    g = torch.Generator().manual_seed(kernel + channels)
    padded = torch.randn(2, 21, 19, channels, generator=g)  # (B, H, W, C), padding already applied
    weight = torch.randn(channels, kernel, kernel, generator=g)
    bias = torch.randn(channels, generator=g)
    dense = F.conv2d(padded.permute(0, 3, 1, 2), weight[:, None], bias, stride=stride, dilation=dilation,
                     groups=channels)  # (B, C, H_out, W_out)
    b, h, w = torch.meshgrid(*(torch.arange(n) for n in (2, dense.shape[2], dense.shape[3])), indexing="ij")
    every = torch.stack([b, h, w], -1).reshape(-1, 3)
    positions = every[torch.randperm(every.shape[0], generator=g)[: every.shape[0] // 3]].contiguous()
    out = np.empty((positions.shape[0], channels), np.float32)
    _C.depthwise_forward(padded.numpy(), positions.numpy(), weight.numpy(), bias.numpy(), stride, dilation, out)
    expected = dense.permute(0, 2, 3, 1)[positions[:, 0], positions[:, 1], positions[:, 2]]
    np.testing.assert_allclose(out, expected.numpy(), rtol=1e-5, atol=1e-4)

    grad_out = torch.randn(positions.shape[0], channels, generator=g)
    grad_input, grad_weight = np.zeros(padded.shape, np.float32), np.empty(weight.shape, np.float32)
    _C.depthwise_backward(padded.numpy(), positions.numpy(), weight.numpy(), grad_out.numpy(), stride, dilation,
                          grad_input, grad_weight)
    x, wt = padded.clone().requires_grad_(), weight.clone().requires_grad_()
    ref = F.conv2d(x.permute(0, 3, 1, 2), wt[:, None], None, stride=stride, dilation=dilation, groups=channels)
    picked = ref.permute(0, 2, 3, 1)[positions[:, 0], positions[:, 1], positions[:, 2]]
    ref_gx, ref_gw = torch.autograd.grad(picked, (x, wt), grad_out)
    np.testing.assert_allclose(grad_input, ref_gx.numpy(), rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(grad_weight, ref_gw.numpy(), rtol=1e-4, atol=1e-3)


def test_kernel_checks_shapes_and_positions():
    padded = np.zeros((1, 9, 9, 4), np.float32)
    weight = np.zeros((4, 3, 3), np.float32)
    out = np.zeros((1, 4), np.float32)
    with pytest.raises(ValueError, match="reads outside"):
        _C.depthwise_forward(padded, np.array([[0, 7, 0]], np.int64), weight, None, 1, 1, out)
    with pytest.raises(ValueError, match="reads outside"):
        _C.depthwise_forward(padded, np.array([[1, 0, 0]], np.int64), weight, None, 1, 1, out)
    with pytest.raises(ValueError, match="weight must be"):
        _C.depthwise_forward(padded, np.array([[0, 0, 0]], np.int64), np.zeros((5, 3, 3), np.float32), None, 1, 1, out)
    with pytest.raises(ValueError, match="out holds"):
        _C.depthwise_forward(padded, np.array([[0, 0, 0]], np.int64), weight, None, 1, 1, np.zeros((2, 4), np.float32))
    with pytest.raises(TypeError):  # an output of the wrong dtype is refused, never silently copied
        _C.depthwise_forward(padded, np.array([[0, 0, 0]], np.int64), weight, None, 1, 1, np.zeros((1, 4)))


def test_kernel_as_torch_operators():
    # torch.compile keeps the kernel in its graph through these operators: their schemas, fake
    # (shape-only) forms and dispatch must agree with the kernel, whose checks still apply.
    g = torch.Generator().manual_seed(0)
    padded, weight, bias = torch.randn(2, 13, 11, 6, generator=g), torch.randn(6, 3, 3, generator=g), torch.randn(6)
    positions = torch.tensor([[0, 0, 0], [1, 4, 3], [1, 10, 8]])
    torch.library.opcheck(depthwise_forward, (padded, positions, weight, bias, 1, 1))
    torch.library.opcheck(depthwise_backward, (padded, positions, weight, torch.randn(3, 6, generator=g), 1, 1))
    with pytest.raises(ValueError, match="reads outside"):
        depthwise_forward(padded, torch.tensor([[0, 11, 0]]), weight, None, 1, 1)
