"""Training engine: CPU/GPU trainer, atomic checkpoints, gloo/NCCL launch."""
from .checkpoint import AtomicCheckpointer, atomic_write
from .inference_model import build_inference_model
from .launch import launch
from .run_folder import write_results
from .trainer import Trainer

__all__ = ["AtomicCheckpointer", "Trainer", "atomic_write", "build_inference_model", "launch", "write_results"]
