"""The one place that asks whether this process is in a torch.distributed process group, and
where in it. Joining and leaving a group is the caller's (or `cxrfast.pretrain`'s) business."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import torch
import torch.distributed as dist


def in_process_group() -> bool:
    return dist.is_available() and dist.is_initialized()


def rank() -> int:
    return dist.get_rank() if in_process_group() else 0


def world_size() -> int:
    return dist.get_world_size() if in_process_group() else 1


@contextlib.contextmanager
def joined_from_environment() -> Iterator[None]:
    """Inside, the process group torchrun's environment describes (WORLD_SIZE > 1), joined here
    unless the caller already joined one (then it is the caller's, and left alone), and left on
    the way out: NCCL on GPUs, gloo on CPUs. Nothing happens for a single process."""
    joined = int(os.environ.get("WORLD_SIZE", "1")) > 1 and not in_process_group()
    if joined:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield
    finally:
        if joined and in_process_group():
            dist.destroy_process_group()


def local_rank() -> int:
    """This process's GPU on its node, as torchrun numbers them."""
    return int(os.environ.get("LOCAL_RANK", "0"))
