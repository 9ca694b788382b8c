"""torch.compile on SparseEncoder: one graph (fullgraph=True fails at any graph break) whose
features and gradients equal eager's. With a fixed kept count and patches as large as the
deepest stride every shape follows from the batch size; with smaller patches (coarser stages run
on cells whose count depends on the mask) or no kept count, the counts are data-dependent and
dynamo must be allowed to capture them (`capture_dynamic_output_shape_ops`). aot_eager traces
everything inductor would (dynamo, autograd, fake tensors) without inductor's C++ builds, minutes
on a small CPU."""

from __future__ import annotations

import pytest
import torch
from helpers.backbones import STAGES, ConvNeXt, ResNet
from torch._dynamo.testing import CompileCounterWithBackend

from cxrfast.nn import SparseEncoder
from cxrfast.nn.masking import spark_mask
from cxrfast.ops.sparse_tiles import TileLayout


def _encoder(kind, patch: int, kept: int | None) -> SparseEncoder:
    torch.manual_seed(0)
    return SparseEncoder(kind(depths=(1, 1, 1, 1)), patch_size=patch, stages=STAGES[kind], kept=kept)


# (patch, kept) on 64 × 96 images masked by half.
LAYOUTS = {"p32-kept": (32, 3), "p16-kept": (16, 12), "p32-any": (32, None)}


# Each layout once and each backbone at least once: every pairing costs half a minute of tracing and
# the layouts' code paths do not depend on the block type.
@pytest.mark.parametrize("kind,layout", [(ResNet, "p16-kept"), (ResNet, "p32-any"), (ConvNeXt, "p32-kept")])
def test_one_graph_equal_to_eager(kind, layout):
    patch, kept = LAYOUTS[layout]
    torch._dynamo.reset()
    eager, twin = _encoder(kind, patch, kept), _encoder(kind, patch, kept)
    counter = CompileCounterWithBackend("aot_eager")
    compiled = torch.compile(twin, backend=counter, fullgraph=True)
    with torch._dynamo.config.patch(capture_dynamic_output_shape_ops=patch < 32 or kept is None):
        for step, batch in enumerate([2, 2, 3, 4]):
            generator = torch.Generator().manual_seed(step)
            visible = spark_mask(batch, 64 // patch, 96 // patch, 0.5, generator=generator)
            images = torch.randn(batch, 1, 64, 96, generator=torch.Generator().manual_seed(step))
            ours_in, ref_in = images.clone().requires_grad_(), images.clone().requires_grad_()
            ours, expected = compiled(ours_in, visible), eager(ref_in, visible)
            for a, b in zip(ours, expected):
                torch.testing.assert_close(a, b)
            weights = [torch.randn_like(f) for f in expected]
            sum((f * w).sum() for f, w in zip(ours, weights)).backward()
            sum((f * w).sum() for f, w in zip(expected, weights)).backward()
            torch.testing.assert_close(ours_in.grad, ref_in.grad)
            for (name, p), q in zip(twin.backbone.named_parameters(), eager.backbone.parameters()):
                torch.testing.assert_close(p.grad, q.grad, msg=lambda m: f"{name}: {m}")
    # A new mask is data, not a reason to recompile; a new batch size recompiles once, to a graph
    # dynamic in it (nothing may pin the batch size, such as hashing it in a cache key).
    assert counter.frame_count == 2


def test_compiled_layout_still_checks_the_kept_count():
    build = torch.compile(lambda visible: TileLayout.from_mask(visible, kept=2).batch, backend="aot_eager",
                          fullgraph=True)
    with pytest.raises(RuntimeError, match="kept=2, but a sample keeps"):
        build(spark_mask(2, 2, 3, 0.5, generator=torch.Generator().manual_seed(0)))
