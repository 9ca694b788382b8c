"""cxrfast.bench.eval under pytest-benchmark: DeLong and the paired bootstrap against their
definitions (see that module). Run: make bench."""

from conftest import suite_test

test_eval = suite_test("eval")
