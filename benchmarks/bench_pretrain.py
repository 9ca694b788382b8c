"""cxrfast.bench.pretrain under pytest-benchmark: each method's training step against its
baseline or its encoder's own step, SparK's encoder and decoder width, DINO's speed and peak
memory, GMML's corruption and report captioning (see that module and the ones it lists). Run:
make bench."""

from conftest import suite_test

test_pretrain = suite_test("pretrain")
