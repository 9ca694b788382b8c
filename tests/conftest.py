"""Settings every test module needs before anything it imports is loaded, the `gpu` marker and
the shared fixtures (tests/helpers/fixtures.py)."""

import os

import pytest
import torch

if not torch.cuda.is_available():
    # Triton reads this once, when it is first imported, and timm, torch._dynamo and DDP all
    # import it: set here, before collection, so that without a GPU the Triton kernels' tests run
    # in the interpreter whichever module happens to import Triton first.
    os.environ["TRITON_INTERPRET"] = "1"

pytest_plugins = ["helpers.fixtures"]  # loaded after the lines above


def pytest_collection_modifyitems(config, items):
    """Tests marked `gpu` (`make gpu-check` runs them with `-m gpu`) skip, with the reason, where
    torch sees no CUDA GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if item.get_closest_marker("gpu") is not None:
            item.add_marker(skip)
