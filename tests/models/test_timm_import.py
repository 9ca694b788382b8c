"""import_timm in a fresh interpreter, where torchvision may or may not load its operators."""

from __future__ import annotations

import subprocess
import sys

PROGRAM = """
import warnings
import torch
from cxrfast.models import import_timm
from cxrfast.models.timm_import import torchvision_operators
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    timm = import_timm()
    assert import_timm() is timm
import torchvision.extension
net = timm.create_model("resnet18", in_chans=1, num_classes=3).eval()
print(tuple(net(torch.zeros(2, 1, 64, 64)).shape) == (2, 3), len(caught), torchvision.extension._has_ops(),
      torchvision_operators())
"""


def test_timm_imports_and_builds_networks():
    built, warnings, has_ops, said = subprocess.run([sys.executable, "-c", PROGRAM], capture_output=True, text=True,
                                                    check=True).stdout.split()
    assert built == "True"
    # The fallback is taken exactly where torchvision's operators do not load, and says so when
    # asked, without a warning.
    assert warnings == "0" and said == has_ops
