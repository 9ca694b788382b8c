"""import_timm in a fresh interpreter, where torchvision may or may not load its operators."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import warnings
import torch
from cxrfast.models import import_timm
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    timm = import_timm()
    assert import_timm() is timm
import torchvision.extension
net = timm.create_model("resnet18", in_chans=1, num_classes=3).eval()
print(tuple(net(torch.zeros(2, 1, 64, 64)).shape) == (2, 3), len(caught), torchvision.extension._has_ops())
"""


def test_timm_imports_and_builds_networks():
    built, warnings, has_ops = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                                              check=True).stdout.split()
    assert built == "True"
    # The fallback is taken, and said once, exactly where torchvision's operators do not load.
    assert warnings == ("0" if has_ops == "True" else "1")
