"""cxrfast.bench.sparse under pytest-benchmark: SparseEncoder against SparK's dense-masked
encoder, forward + backward, with the activation memory each keeps for backward (see that
module). Run: make bench."""

from conftest import suite_test

test_sparse = suite_test("sparse")
