"""cxrfast.bench.finetune under pytest-benchmark: linear evaluation against solo-learn's loop, a
full fine-tuning step against a plain timm loop, a segmentation step against
segmentation_models_pytorch (see that module). Run: make bench."""

from conftest import suite_test

test_finetune = suite_test("finetune")
