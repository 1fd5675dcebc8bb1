"""Multi-process launch on GPU (NCCL) or CPU (gloo).

The host's ``launch`` asserts CUDA in every worker (``fastreid/engine/launch.py:77``) and
always uses NCCL (``:80``). Here ``num_gpus_per_machine`` is the number of processes per
machine and the backend follows the device the model will live on (``MODEL.DEVICE``, passed
as ``device``): NCCL and one GPU per process for ``cuda``, gloo for ``cpu`` -- also on a
machine where CUDA is visible (DDP over CPU parameters cannot use NCCL: "No backend type
associated with device type cpu"), and then any number of CPU processes is allowed.
``torchrun`` works too: when ``WORLD_SIZE`` is set in the environment, :func:`launch` joins the
process group it describes instead of spawning.
"""
from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from fastreid.utils import comm

logger = logging.getLogger(__name__)


def _find_free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def default_backend(device: str | None = None) -> str:
    """The process-group backend for models on ``device`` (``MODEL.DEVICE``): ``nccl`` for a
    CUDA device, ``gloo`` for the CPU. ``None``: ``cuda`` when CUDA is available (the default
    of ``MODEL.DEVICE``, :func:`fastreid_ext.config.defaults.default_device`)."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    kind = torch.device(device).type
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError(f"MODEL.DEVICE is {device!r} but CUDA is not available; "
                               f"use MODEL.DEVICE cpu (processes then talk over gloo)")
        return "nccl"
    if kind == "cpu":
        return "gloo"
    raise ValueError(f"no process-group backend for MODEL.DEVICE {device!r} (cuda or cpu)")


def launch(main_func, num_gpus_per_machine: int, num_machines: int = 1, machine_rank: int = 0,
           dist_url: str | None = None, args=(), device: str | None = None):
    """Run ``main_func(*args)`` in ``num_machines * num_gpus_per_machine`` processes.

    ``device``: ``MODEL.DEVICE`` of the run; it picks the backend (:func:`default_backend`).
    """
    if "WORLD_SIZE" in os.environ and int(os.environ["WORLD_SIZE"]) > 1 and not dist.is_initialized():
        # started by torchrun: one process per rank already exists
        local_world = int(os.environ.get("LOCAL_WORLD_SIZE", os.environ["WORLD_SIZE"]))
        _init_worker(int(os.environ.get("LOCAL_RANK", 0)), int(os.environ["WORLD_SIZE"]), local_world,
                     int(os.environ["RANK"]) // local_world, "env://", default_backend(device))
        return main_func(*args)

    world_size = num_machines * num_gpus_per_machine
    if world_size <= 1:
        return main_func(*args)
    backend = default_backend(device)  # fail here, in the parent, not in every worker
    if dist_url in (None, "auto"):
        if num_machines != 1:
            raise ValueError("dist_url=auto is only supported on one machine")
        dist_url = f"tcp://127.0.0.1:{_find_free_port()}"
    if backend == "nccl":
        _check_gpu_count(num_gpus_per_machine)
    mp.start_processes(_distributed_worker, nprocs=num_gpus_per_machine,
                       args=(main_func, world_size, num_gpus_per_machine, machine_rank, dist_url, args,
                             backend),
                       daemon=False, start_method="spawn")


def _check_gpu_count(per_machine: int) -> None:
    if per_machine > torch.cuda.device_count():
        raise RuntimeError(f"{per_machine} processes per machine with MODEL.DEVICE cuda but only "
                           f"{torch.cuda.device_count()} GPU(s) visible; use fewer processes or "
                           f"MODEL.DEVICE cpu")


def _init_worker(local_rank: int, world_size: int, per_machine: int, machine_rank: int, dist_url: str,
                 backend: str):
    if backend == "nccl":
        _check_gpu_count(per_machine)
        torch.cuda.set_device(local_rank)
    global_rank = machine_rank * per_machine + local_rank
    dist.init_process_group(backend=backend, init_method=dist_url, world_size=world_size,
                            rank=global_rank, timeout=timedelta(minutes=30))
    num_machines = world_size // per_machine
    for i in range(num_machines):
        ranks = list(range(i * per_machine, (i + 1) * per_machine))
        pg = dist.new_group(ranks)
        if i == machine_rank:
            comm._LOCAL_PROCESS_GROUP = pg
    comm.synchronize()


def _distributed_worker(local_rank, main_func, world_size, per_machine, machine_rank, dist_url, args,
                        backend):
    _init_worker(local_rank, world_size, per_machine, machine_rank, dist_url, backend)
    try:
        main_func(*args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
