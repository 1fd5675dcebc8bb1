"""``Trainer``: the host's ``DefaultTrainer`` made to run on CPU or GPU.

What changes against ``fastreid/engine/defaults.py`` and why:
- loaders: ``fastreid_ext.data.build`` (plain ``DataLoader``; the host's ``DataLoaderX`` makes a
  CUDA stream in ``__init__``, ``fastreid/data/data_utils.py:151``), clips for video, 1-frame
  tracklets for images, ``DATALOADER.NUM_WORKERS_TEST`` instead of the hard-coded 4
  (``fastreid/data/build.py:124``);
- evaluation: ``VideoClipEvaluator`` + our ``inference_on_dataset`` (the host's evaluator
  builds Cython in site-packages and ``sys.exit``s on failure, ``evaluation/rank_cylib/__init__.py:15-20``;
  its flip test normalises twice, ``evaluation/evaluator.py:119-121``);
- DDP without ``device_ids`` on CPU (gloo); the host always passes a CUDA device id (``defaults.py:210``);
- AMP through ``torch.amp`` (:class:`DeviceTrainer`), not the CUDA-only ``AMPTrainer``;
- losses with their own optimizer (center loss) are kept out of the main optimizer;
- checkpoints written atomically (:class:`AtomicCheckpointer`);
- ``OUTPUT_DIR/results.json`` holds the last evaluation results.
"""
from __future__ import annotations

import inspect
import json
import logging
import os
from collections import OrderedDict

import torch
from fastreid.engine.defaults import DefaultTrainer
from fastreid.engine.train_loop import TrainerBase
from fastreid.evaluation.testing import print_csv_format
from fastreid.modeling import build_model
from fastreid.solver.build import get_default_optimizer_params, maybe_add_freeze_layer, \
    maybe_add_gradient_clipping
from fastreid.utils import comm
from fastreid.utils.logger import setup_logger
from torch.nn.parallel import DistributedDataParallel

from .checkpoint import AtomicCheckpointer, ScalerCheckpointable, atomic_write
from .train_loop import DeviceTrainer, own_optimizers

logger = logging.getLogger(__name__)


class Trainer(DefaultTrainer):
    """DefaultTrainer with CPU/GPU loaders, torch.amp, our evaluator and atomic checkpoints.

    Same classmethod hooks as the host (``build_model``, ``build_optimizer``,
    ``build_train_loader``, ``build_test_loader``, ``build_evaluator``, ``test``), so a
    project subclasses it exactly as it would subclass ``DefaultTrainer``.
    """

    def __init__(self, cfg):
        TrainerBase.__init__(self)
        if not logging.getLogger("fastreid").isEnabledFor(logging.INFO):
            setup_logger()
        data_loader = self.build_train_loader(cfg)
        cfg = self.auto_scale_hyperparams(cfg, data_loader.dataset.num_classes)
        model = self.build_model(cfg)
        optimizer, param_wrapper = self.build_optimizer(cfg, model)

        if comm.get_world_size() > 1:
            model = self.wrap_ddp(cfg, model)

        self.iters_per_epoch = max(1, len(data_loader.dataset) // cfg.SOLVER.IMS_PER_BATCH)
        self._trainer = DeviceTrainer(model, data_loader, optimizer, param_wrapper,
                                      amp=cfg.SOLVER.AMP.ENABLED, amp_dtype=cfg.SOLVER.AMP.DTYPE,
                                      iters_per_epoch=self.iters_per_epoch)
        self.scheduler = self.build_lr_scheduler(cfg, optimizer, self.iters_per_epoch)
        self.checkpointer = AtomicCheckpointer(model, cfg.OUTPUT_DIR, save_to_disk=comm.is_main_process(),
                                               optimizer=optimizer, **self.scheduler,
                                               grad_scaler=ScalerCheckpointable(self._trainer.grad_scaler))
        self.start_epoch = 0
        self.max_epoch = cfg.SOLVER.MAX_EPOCH
        self.max_iter = self.max_epoch * self.iters_per_epoch
        self.warmup_iters = cfg.SOLVER.WARMUP_ITERS
        self.delay_epochs = cfg.SOLVER.DELAY_EPOCHS
        self.cfg = cfg
        self.register_hooks(self.build_hooks())

    # ------------------------------------------------------------------ building blocks
    @classmethod
    def wrap_ddp(cls, cfg, model):
        """``DistributedDataParallel`` over ``model`` (already on its device).

        - ``device_ids``: the model's own CUDA device (none on the CPU, gloo);
        - ``find_unused_parameters`` (an extra autograd-graph pass every step): only when
          ``MODEL.DDP_FIND_UNUSED_PARAMETERS`` is set or the meta-architecture declares it needs
          it with a class attribute ``ddp_find_unused_parameters = True``;
        - ``broadcast_buffers=False``: BN buffers drift per rank during training; they are
          synchronised from rank 0 before every evaluation (:func:`sync_buffers`, in
          :meth:`test`), so the evaluation uses the statistics the checkpoint saves.
        """
        device = next(model.parameters()).device
        find_unused = bool(cfg.MODEL.DDP_FIND_UNUSED_PARAMETERS) or \
            bool(getattr(model, "ddp_find_unused_parameters", False))
        # no buffer broadcast per forward (torch >= 2.13 names it forward_sync_buffers)
        no_sync = ({"forward_sync_buffers": False}
                   if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                   else {"broadcast_buffers": False})
        return DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None,
            find_unused_parameters=find_unused, **no_sync)

    @classmethod
    def build_model(cls, cfg):
        model = build_model(cfg)
        model.to(model_device_for(cfg.MODEL.DEVICE))
        n_params = sum(p.numel() for p in model.parameters())
        logging.getLogger(__name__).info(f"Model {cfg.MODEL.META_ARCHITECTURE}: {n_params / 1e6:.2f} M parameters "
                                         f"on {cfg.MODEL.DEVICE}")
        return model

    @classmethod
    def build_optimizer(cls, cfg, model):
        """The host's optimizer recipe (``fastreid/solver/build.py:180``) over every parameter
        except those of losses that step their own optimizer (e.g. center-loss centers)."""
        excluded = set()
        for loss, _ in own_optimizers(model):
            excluded.update(id(p) for p in loss.parameters())
        params = get_default_optimizer_params(
            model, base_lr=cfg.SOLVER.BASE_LR, weight_decay=cfg.SOLVER.WEIGHT_DECAY,
            weight_decay_norm=cfg.SOLVER.WEIGHT_DECAY_NORM, bias_lr_factor=cfg.SOLVER.BIAS_LR_FACTOR,
            heads_lr_factor=cfg.SOLVER.HEADS_LR_FACTOR, weight_decay_bias=cfg.SOLVER.WEIGHT_DECAY_BIAS,
            freeze_layers=cfg.MODEL.FREEZE_LAYERS if cfg.SOLVER.FREEZE_ITERS > 0 else [])
        params = [g for g in params if id(g["params"][0]) not in excluded]
        opt_name = cfg.SOLVER.OPT
        if not hasattr(torch.optim, opt_name):
            raise ValueError(f"Unknown SOLVER.OPT {opt_name!r}")
        opt_cls = maybe_add_freeze_layer(cfg, maybe_add_gradient_clipping(cfg, getattr(torch.optim, opt_name)))
        if opt_name == "SGD":
            optimizer = opt_cls(params, momentum=cfg.SOLVER.MOMENTUM, nesterov=cfg.SOLVER.NESTEROV)
        else:
            optimizer = opt_cls(params)
        return optimizer, params

    @classmethod
    def build_train_loader(cls, cfg):
        from fastreid_ext.data.build import build_video_train_loader

        logging.getLogger(__name__).info("Prepare training set")
        return build_video_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """``(loader, num_query)`` like the host; the dataset is kept for the evaluator."""
        from fastreid_ext.data.build import build_video_test_loader

        loader, num_query, _ = build_video_test_loader(cfg, dataset_name)
        return loader, num_query

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_dir=None):
        from fastreid_ext.data.build import build_video_test_loader
        from fastreid_ext.evaluation.video_evaluator import VideoClipEvaluator

        loader, num_query, dataset = build_video_test_loader(cfg, dataset_name)
        items = list(dataset.query) + list(dataset.gallery)
        protocol = cfg.TEST.PROTOCOL
        if protocol == "auto":
            protocol = getattr(dataset, "eval_protocol", "cross_camera")
        groups = None
        if all(len(it) > 3 and isinstance(it[3], dict) and "group" in it[3] for it in items):
            groups = [it[3]["group"] for it in items]
        evaluator = VideoClipEvaluator(
            cfg, num_query=num_query, num_tracklets=len(items),
            pids=[it[1] for it in items], camids=[it[2] for it in items], groups=groups,
            protocol=protocol, output_dir=output_dir or cfg.OUTPUT_DIR, items=items)
        return loader, evaluator

    @classmethod
    def test(cls, cfg, model):
        from fastreid_ext.evaluation.inference import inference_on_dataset

        sync_buffers(model)  # DDP: every rank evaluates with rank 0's BN statistics
        results = OrderedDict()
        for dataset_name in cfg.DATASETS.TESTS:
            logging.getLogger(__name__).info(f"Prepare testing set {dataset_name}")
            data_loader, evaluator = cls.build_evaluator(cfg, dataset_name)
            results_i = inference_on_dataset(model, data_loader, evaluator, flip_test=cfg.TEST.FLIP.ENABLED)
            results[dataset_name] = results_i
            if comm.is_main_process():
                logging.getLogger(__name__).info(f"Evaluation results for {dataset_name} in csv format:")
                print_csv_format(OrderedDict(results_i, dataset=dataset_name))  # the host pops "dataset"
        if comm.is_main_process() and cfg.OUTPUT_DIR:
            write_results(cfg.OUTPUT_DIR, results)
        if len(results) == 1:
            results = list(results.values())[0]
        return results

    def build_hooks(self):
        """The host's hooks, with :class:`~fastreid_ext.engine.precise_bn.PreciseBN` (real
        labels, batches on the model's device) in place of the host's precise-BN hook."""
        from fastreid.engine import hooks

        from .precise_bn import PreciseBN

        return [PreciseBN.from_host(h) if type(h) is hooks.PreciseBN else h
                for h in super().build_hooks()]

    def train(self):
        """Train, then return the last evaluation results (main process)."""
        super(DefaultTrainer, self).train(self.start_epoch, self.max_epoch, self.iters_per_epoch)
        if comm.is_main_process():
            return getattr(self, "_last_eval_results", None)
        return None


def model_device_for(device: str) -> torch.device:
    """``MODEL.DEVICE`` as the device of this process: with several processes and a CUDA
    device without an index, the GPU of this rank (``torch.cuda.current_device()``, set by
    :func:`fastreid_ext.engine.launch.launch`)."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev


def sync_buffers(model: torch.nn.Module, src: int = 0) -> int:
    """Broadcast every floating-point buffer of ``model`` (BN running statistics) from rank
    ``src`` to all ranks, in place; returns the number of buffers sent (0 in one process).

    Training DDP keeps ``broadcast_buffers=False`` (no broadcast per step), so each rank's BN
    statistics drift on its own shard; rank 0's are the ones the checkpoint saves."""
    if comm.get_world_size() <= 1:
        return 0
    import torch.distributed as dist

    model = model.module if isinstance(model, DistributedDataParallel) else model
    buffers = [b for b in model.buffers() if b.is_floating_point() or b.dtype == torch.long]
    for b in buffers:
        dist.broadcast(b.data, src)
    return len(buffers)


def write_results(output_dir: str, results) -> str:
    """Write evaluation results as JSON (atomically) to ``output_dir/results.json``."""
    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if hasattr(v, "item"):
            return v.item()
        return v

    if len(results) == 1:  # one test set: flat, like Trainer.test's return value, plus its name
        name, only = next(iter(results.items()))
        flat = clean(dict(only, dataset=name))
    else:
        flat = clean(results)
    path = os.path.join(output_dir, "results.json")
    atomic_write(path, lambda f: json.dump(flat, f, indent=2, sort_keys=True), mode="w")
    return path
