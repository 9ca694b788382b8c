"""timm in a fresh interpreter, where torchvision may or may not load its compiled operators:
through cxrfast's `import_timm`, and as a user's own `import timm` once cxrfast is imported (a
drop-in user's code). Either way timm builds and runs a network, no warning is raised, and
cxrfast says whether torchvision's operators loaded exactly as torchvision itself does."""

from __future__ import annotations

import subprocess
import sys

import pytest

PROGRAM = """
import warnings
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    {imports}
import torch
import torchvision.extension
from cxrfast.models import import_timm
from cxrfast.models.timm_import import torchvision_operators
assert import_timm() is timm
net = timm.create_model("resnet18", in_chans=1, num_classes=3).eval()
print(tuple(net(torch.zeros(2, 1, 64, 64)).shape) == (2, 3), len(caught), torchvision.extension._has_ops(),
      torchvision_operators())
"""
IMPORTS = {"import_timm": "from cxrfast.models import import_timm; timm = import_timm()",
           "users_own": "import cxrfast, timm, torchvision"}


@pytest.mark.parametrize("imports", IMPORTS)
def test_timm_imports_and_builds_networks(imports):
    program = PROGRAM.format(imports=IMPORTS[imports])
    built, warnings, has_ops, said = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                                                    check=True).stdout.split()
    assert built == "True"
    assert warnings == "0" and said == has_ops


def test_without_cxrfast_torchvision_fails_here_or_loads_its_operators():
    """What the finder mends: on this setup a plain `import timm` fails (or, where torchvision's
    operators load, succeeds with them), so the test above is not vacuous."""
    result = subprocess.run([sys.executable, "-c", "import timm, torchvision.extension as e; print(e._has_ops())"],
                            capture_output=True, text=True)
    assert (result.returncode == 0 and result.stdout.split() == ["True"]) or \
        "torchvision::nms does not exist" in result.stderr
