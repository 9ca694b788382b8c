"""The pretraining suite: a training step of each method on this machine (and the GMML corruption
and report tokenising that feed two of them), every group against its baseline or, where no
baseline runs the method's own code, its floor (the same backbone's own step on the same views).
Each concept's module says what it compares:

- `spark_steps`: SparK's sparse encoder and decoder width against SparK's dense-masked run;
- `method_steps`: SimCLR, MoCo, BYOL and SwAV steps against their encoder's own step;
- `dino_step`: cxrfast's DINO against a naive DINO, speed and peak memory;
- `gmml`: GMML's corruption against per-image loops, and its step against the ViT's own;
- `caption`: report tokenising and the captioning step against their straightforward forms."""

from __future__ import annotations

from cxrfast.bench import caption, dino_step, gmml, method_steps, spark_steps
from cxrfast.bench.case import Case

SUITE = "pretrain"


def cases(scale: str, device: str) -> list[Case]:
    return [*spark_steps.cases(scale, device), *method_steps.cases(scale, device), *dino_step.cases(scale, device),
            *gmml.cases(scale, device), *caption.cases(scale, device)]
