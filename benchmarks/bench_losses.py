"""cxrfast.bench.losses under pytest-benchmark: the fused contrastive, DINO and SwAV losses
against the naive ones, forward + backward, with each one's peak memory (see that module and
cxrfast.bench.swav). Run: make bench."""

from conftest import suite_test

test_losses = suite_test("losses")
