"""Settings every test module needs before anything it imports is loaded."""

import os

import torch

if not torch.cuda.is_available():
    # Triton reads this once, when it is first imported, and timm, torch._dynamo and DDP all
    # import it: set here, before collection, so that without a GPU the Triton kernels' tests run
    # in the interpreter whichever module happens to import Triton first.
    os.environ["TRITON_INTERPRET"] = "1"
