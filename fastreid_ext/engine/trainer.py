"""``Trainer``: the host's ``DefaultTrainer`` made to run on CPU or GPU.

What changes against ``fastreid/engine/defaults.py`` and why:
- loaders: ``fastreid_ext.data.build`` (plain ``DataLoader``; the host's ``DataLoaderX`` makes a
  CUDA stream in ``__init__``, ``fastreid/data/data_utils.py:151``), clips for video, images
  through the host's transforms for image datasets, ``DATALOADER.NUM_WORKERS_TEST`` instead of
  the hard-coded 4 (``fastreid/data/build.py:124``);
- the host's ``Baseline`` takes its losses from the plugin's registry
  (:mod:`fastreid_ext.modeling.meta_arch.host_models`);
- the optimizer without the host's ``ContiguousParams`` (``fastreid/solver/build.py:192-208``),
  whose flat buffer ``zero_grad()`` leaves without a gradient on torch >= 2: the host's own
  ``DefaultTrainer`` updates no parameter;
- evaluation: ``VideoClipEvaluator`` + our ``inference_on_dataset`` (the host's evaluator
  builds Cython in site-packages and ``sys.exit``s on failure, ``evaluation/rank_cylib/__init__.py:15-20``;
  its flip test normalises twice, ``evaluation/evaluator.py:119-121``);
- DDP without ``device_ids`` on CPU (gloo) (:mod:`.ddp`); the host always passes a CUDA
  device id (``defaults.py:210``);
- AMP through ``torch.amp`` (:class:`DeviceTrainer`), not the CUDA-only ``AMPTrainer``;
- losses with their own optimizer (center loss) are kept out of the main optimizer, and
  modules opt in to their own weight decay / learning rate (:mod:`.param_groups`);
- checkpoints written atomically (:class:`AtomicCheckpointer`);
- ``OUTPUT_DIR/results.json`` holds the last evaluation results, with ``"complete": true`` only
  once the run has finished (a killed run's intermediate results say ``false``;
  :func:`.run_folder.write_results`);
- the config is validated (:func:`fastreid_ext.config.validate.validate_config`, which
  ``build_config`` already ran), the test sets are built and their evaluators given the
  model's per-part distance (``TEST.*`` options the ``fgpr`` / per-part evaluation does not
  apply raise there) before any training, so a typo fails in seconds;
- ``--resume`` keeps the best metric (``model_best.pth`` is not overwritten by a worse model),
  a finished run or ``MAX_EPOCH 0`` evaluates instead of crashing (the host's hooks read
  ``trainer.epoch``, never set when no epoch runs, ``fastreid/engine/hooks.py:380``), and the
  output folder is locked while a run trains in it.
"""
from __future__ import annotations

import contextlib
import logging
import os
from collections import OrderedDict

import torch

from fastreid.engine import hooks
from fastreid.engine.defaults import DefaultTrainer
from fastreid.engine.train_loop import TrainerBase
from fastreid.evaluation.testing import print_csv_format
from fastreid.solver.build import maybe_add_freeze_layer, maybe_add_gradient_clipping
from fastreid.utils import comm
from fastreid.utils.events import CommonMetricPrinter, get_event_storage
from fastreid.utils.logger import setup_logger

from ..config.validate import validate_config
from ..data.items import extras_of
from ..utils.modules import unwrap
from ..utils.safe_io import file_lock
from .checkpoint import AtomicCheckpointer, ScalerCheckpointable, read_best_metric
from .ddp import sync_buffers, wrap_ddp
from .param_groups import optimizer_param_groups
from .run_folder import remove_stale_temporaries, write_results
from .train_loop import DeviceTrainer

logger = logging.getLogger(__name__)

def epoch_iterations(cfg, data_loader) -> int:
    """Iterations in one training epoch (``SOLVER.MAX_EPOCH``, ``STEPS``, checkpoint and eval
    periods count these epochs; the loader itself is an infinite stream).

    ``DATALOADER.EPOCH_LENGTH``:
    - ``"identities"`` with an identity (``P x K``) sampler: ``identities x K // batch``,
      the epoch of the video baseline's public code (its
      ``RandomIdentitySampler`` yields ``K`` samples of every identity, ``drop_last=True``);
      with any other sampler, the same as ``"samples"``;
    - ``"samples"`` (default): ``samples // batch``, the host's definition
      (``fastreid/engine/defaults.py``); the video baseline's configs (and projects that follow
      their public code) set ``identities``.

    E.g. iLIDS-VID (150 train identities x 2 tracklets, K = 5, batch 140): 5 vs 2 iterations.
    The value is checked by :func:`~fastreid_ext.config.validate.check_solver_and_loader`.
    """
    mode = cfg.DATALOADER.EPOCH_LENGTH
    batch = cfg.SOLVER.IMS_PER_BATCH
    sampler = getattr(getattr(data_loader, "batch_sampler", None), "sampler", None)
    pids = getattr(sampler, "pids", None)
    if mode == "identities" and pids is not None and hasattr(sampler, "num_instances"):
        return max(1, len(pids) * sampler.num_instances // batch)
    return max(1, len(data_loader.dataset) // batch)


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
        validate_config(cfg)  # already run by build_config; again for a config made or edited by hand
        # bad test sets / protocols fail now, not after training; the first evaluation uses them
        # (then they are dropped: later evaluations build their own, as the host does)
        self._startup_test_sets = OrderedDict(
            (dataset_name, self.build_evaluator(cfg, dataset_name)) for dataset_name in cfg.DATASETS.TESTS)
        data_loader = self.build_train_loader(cfg)
        cfg = self.auto_scale_hyperparams(cfg, data_loader.dataset.num_classes)
        model = self.build_model(cfg)
        for _, evaluator in self._startup_test_sets.values():  # the model's per-part distance vs TEST.*
            set_distance_parts(evaluator, model)
        optimizer, param_wrapper = self.build_optimizer(cfg, model)

        if comm.get_world_size() > 1:
            model = self.wrap_ddp(cfg, model)

        self.iters_per_epoch = epoch_iterations(cfg, data_loader)
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
        self.checkpointer.partial_load = bool(cfg.MODEL.PARTIAL_LOAD)
        self._resumed_best_metric = None
        self.register_hooks(self.build_hooks())

    # ------------------------------------------------------------------ building blocks
    @classmethod
    def wrap_ddp(cls, cfg, model):
        """``DistributedDataParallel`` over ``model`` (:func:`.ddp.wrap_ddp`)."""
        return wrap_ddp(cfg, model)

    @classmethod
    def build_model(cls, cfg):
        """The host's ``build_model``; the host's ``Baseline`` takes its losses from the plugin's
        registry (:mod:`fastreid_ext.modeling.meta_arch.host_models`)."""
        from fastreid_ext.modeling.meta_arch.host_models import build_model

        model = build_model(cfg)
        model.to(model_device_for(cfg.MODEL.DEVICE))
        n_params = sum(p.numel() for p in model.parameters())
        logging.getLogger(__name__).info(f"Model {cfg.MODEL.META_ARCHITECTURE}: {n_params / 1e6:.2f} M parameters "
                                         f"on {cfg.MODEL.DEVICE}")
        return model

    @classmethod
    def build_optimizer(cls, cfg, model):
        """The host's optimizer recipe (``fastreid/solver/build.py:180``) over the parameter
        groups of :func:`.param_groups.optimizer_param_groups` (no own-optimizer loss
        parameters; the modules' weight-decay and learning-rate opt-in hooks applied)."""
        params = optimizer_param_groups(cfg, model)
        opt_name = cfg.SOLVER.OPT  # checked by config.validate.check_solver_and_loader
        opt_cls = maybe_add_freeze_layer(cfg, maybe_add_gradient_clipping(cfg, getattr(torch.optim, opt_name)))
        if opt_name == "SGD":
            optimizer = opt_cls(params, momentum=cfg.SOLVER.MOMENTUM, nesterov=cfg.SOLVER.NESTEROV)
        else:
            optimizer = opt_cls(params)
        return optimizer, params

    @classmethod
    def build_train_loader(cls, cfg):
        """``(B, C, H, W)`` images for image datasets (the host's transforms), ``(B, T, C, H, W)``
        clips for video datasets (:func:`fastreid_ext.data.build.build_reid_train_loader`)."""
        from fastreid_ext.data.build import build_reid_train_loader

        logging.getLogger(__name__).info("Prepare training set")
        return build_reid_train_loader(cfg)

    @classmethod
    def build_test_loader(cls, cfg, dataset_name):
        """``(loader, num_query)`` like the host; images or clips as in :meth:`build_train_loader`."""
        from fastreid_ext.data.build import build_reid_test_loader

        loader, num_query, _ = build_reid_test_loader(cfg, dataset_name)
        return loader, num_query

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_dir=None):
        """``(loader, VideoClipEvaluator)``; image datasets are evaluated with the host's result
        keys (``host_keys``), on per-identity means with ``TEST.IMAGE.AVERAGE_PER_ID``
        (:class:`~fastreid_ext.evaluation.average_per_id.IdAveragedEvaluator`)."""
        from fastreid_ext.data.build import build_reid_test_loader, is_image_test_loader
        from fastreid_ext.evaluation.scoring import describe_scoring
        from fastreid_ext.evaluation.video_evaluator import VideoClipEvaluator

        loader, num_query, dataset = build_reid_test_loader(cfg, dataset_name)
        items = list(dataset.query) + list(dataset.gallery)
        protocol = cfg.TEST.PROTOCOL
        if protocol == "auto":
            protocol = getattr(dataset, "eval_protocol", "cross_camera")
        groups = None  # only the groupwise protocol takes groups (metrics_from_features.py:221 refuses others)
        if protocol in ("groupwise", "fgpr") and all("group" in extras_of(it) for it in items):
            groups = [it[3]["group"] for it in items]
        evaluator_cls = VideoClipEvaluator
        if cfg.TEST.IMAGE.AVERAGE_PER_ID:  # the fine-grained ReID paper's image test (not the standard protocol)
            if not is_image_test_loader(loader):
                raise ValueError(f"TEST.IMAGE.AVERAGE_PER_ID needs an image test set; {dataset_name} is a video set")
            from fastreid_ext.evaluation.average_per_id import IdAveragedEvaluator as evaluator_cls
        evaluator = evaluator_cls(
            cfg, num_query=num_query, num_tracklets=len(items),
            pids=[it[1] for it in items], camids=[it[2] for it in items], groups=groups,
            protocol=protocol, output_dir=output_dir or cfg.OUTPUT_DIR, items=items,
            host_keys=is_image_test_loader(loader))
        evaluator.scoring = describe_scoring(cfg, protocol, loader.dataset)
        return loader, evaluator

    @classmethod
    def test(cls, cfg, model, prebuilt=None, scoring=None, complete=True):
        """Evaluate ``model`` on every ``DATASETS.TESTS`` set. ``prebuilt``: ``{dataset_name:
        (loader, evaluator)}`` already built (the trainer's, from ``__init__``); each entry is
        used once and removed from the dict, the other sets are built here. ``scoring``: a dict
        filled with ``{dataset_name: how it was scored}`` (also written into ``results.json``).
        ``complete``: written into ``results.json`` (``False`` for the evaluations made while a
        run trains: intermediate results)."""
        from fastreid_ext.evaluation.inference import inference_on_dataset
        from fastreid_ext.evaluation.scoring import scoring_line

        sync_buffers(model)  # DDP: every rank evaluates with rank 0's BN statistics
        results = OrderedDict()
        scoring = {} if scoring is None else scoring
        for dataset_name in cfg.DATASETS.TESTS:
            logging.getLogger(__name__).info(f"Prepare testing set {dataset_name}")
            if prebuilt and dataset_name in prebuilt:
                data_loader, evaluator = prebuilt.pop(dataset_name)
            else:
                data_loader, evaluator = cls.build_evaluator(cfg, dataset_name)
            set_distance_parts(evaluator, model)
            results_i = inference_on_dataset(model, data_loader, evaluator, flip_test=cfg.TEST.FLIP.ENABLED)
            results[dataset_name] = results_i
            scoring[dataset_name] = getattr(evaluator, "scoring", None)
            if comm.is_main_process():
                logging.getLogger(__name__).info(f"Evaluation results for {dataset_name} in csv format:")
                print_csv_format(OrderedDict(results_i, dataset=dataset_name))  # the host pops "dataset"
                if scoring[dataset_name]:
                    logging.getLogger(__name__).info(scoring_line(scoring[dataset_name]))
        if comm.is_main_process() and cfg.OUTPUT_DIR:
            write_results(cfg.OUTPUT_DIR, results, complete=complete, scoring=scoring)
        if len(results) == 1:
            results = list(results.values())[0]
        return results

    def build_hooks(self):
        """The host's hooks, with :class:`~fastreid_ext.engine.precise_bn.PreciseBN` (real
        labels, batches on the model's device) in place of the host's precise-BN hook, and the
        evaluation hook's first run using the test sets ``__init__`` built (not built twice)."""
        from fastreid.engine import hooks

        from .precise_bn import PreciseBN

        def test_and_save_results():  # the host's (defaults.py:302), with the test sets of __init__
            self._last_eval_scoring = {}  # the evaluation hook runs while training: intermediate results
            self._last_eval_results = self.test(self.cfg, self.model, prebuilt=self._startup_test_sets,
                                                scoring=self._last_eval_scoring, complete=False)
            return self._last_eval_results

        def ours(h):
            if type(h) is hooks.PreciseBN:
                return PreciseBN.from_host(h)
            if type(h) is hooks.EvalHook:  # same period as the host's (defaults.py:308)
                return hooks.EvalHook(self.cfg.TEST.EVAL_PERIOD, test_and_save_results)
            return h

        return [ours(h) for h in super().build_hooks()]

    def build_writers(self):
        """The host's writers; the console printer skips a second write at the same iteration
        (with one iteration per epoch the host's ``CommonMetricPrinter`` divides by zero,
        ``fastreid/utils/events.py:220``)."""
        writers = super().build_writers()
        return [_OncePerIterPrinter(self.max_iter) if type(w) is CommonMetricPrinter else w for w in writers]

    def resume_or_load(self, resume=True):
        """The host's ``resume_or_load`` (our checkpointer falls back to an older checkpoint when
        the last is unreadable); when resuming, the best metric so far is read back from
        ``model_best.pth`` so that a worse model does not replace it."""
        super().resume_or_load(resume=resume)
        self._resumed_best_metric = None
        if resume and self.checkpointer.has_checkpoint() and self.cfg.OUTPUT_DIR:
            self._resumed_best_metric = read_best_metric(os.path.join(self.cfg.OUTPUT_DIR, "model_best.pth"))
            if self._resumed_best_metric is not None:
                logger.info(f"Best metric so far (model_best.pth): {self._resumed_best_metric:.4f}")

    def train(self):
        """Train, then return the last evaluation results (main process). A run with nothing
        left to train (``SOLVER.MAX_EPOCH`` reached, or 0) evaluates the loaded model instead."""
        out = self.cfg.OUTPUT_DIR
        if self.start_epoch >= self.max_epoch:
            logger.warning(f"Nothing to train: start epoch {self.start_epoch} >= SOLVER.MAX_EPOCH "
                           f"{self.max_epoch} (a finished run? raise SOLVER.MAX_EPOCH to train longer). "
                           f"Evaluating the loaded model.")
            results = (self.test(self.cfg, self.model, prebuilt=self._startup_test_sets)
                       if self.cfg.DATASETS.TESTS else None)
            return results if comm.is_main_process() else None
        main = comm.is_main_process() and bool(out)
        with (file_lock(os.path.join(out, "training"), blocking=False, what=f"training output folder {out}")
              if main else contextlib.nullcontext()):
            if main:
                remove_stale_temporaries(out)
            if self._resumed_best_metric is not None:
                for h in self._hooks:
                    if isinstance(h, hooks.PeriodicCheckpointer):
                        h.best_metric = max(h.best_metric, self._resumed_best_metric)
            super(DefaultTrainer, self).train(self.start_epoch, self.max_epoch, self.iters_per_epoch)
            if not comm.is_main_process():
                return None
            results = getattr(self, "_last_eval_results", None)
            if main and results is not None:  # the run is finished: mark its results complete
                named = results if len(self.cfg.DATASETS.TESTS) > 1 else {self.cfg.DATASETS.TESTS[0]: results}
                write_results(out, named, complete=True, scoring=getattr(self, "_last_eval_scoring", None))
            return results


class _OncePerIterPrinter(CommonMetricPrinter):
    """``CommonMetricPrinter`` that writes at most once per iteration."""

    def write(self):
        storage = get_event_storage()
        if self._last_write is not None and storage.iter == self._last_write[0]:
            return
        super().write()


def set_distance_parts(evaluator, model: torch.nn.Module) -> None:
    """Give ``evaluator`` (when it takes them) the model's per-part distance: the meta-arch's
    ``distance_parts`` / ``distance_weights`` (e.g. one part per stream of a multi-stream
    model), ``None`` without. :class:`~fastreid_ext.evaluation.video_evaluator.VideoClipEvaluator` raises
    ``ValueError`` here on ``TEST.*`` options that evaluation does not apply."""
    if hasattr(evaluator, "distance_parts"):
        bare = unwrap(model)
        evaluator.distance_parts = getattr(bare, "distance_parts", None)
        evaluator.distance_weights = getattr(bare, "distance_weights", None)


def model_device_for(device: str) -> torch.device:
    """``MODEL.DEVICE`` as the device of this process: with several processes and a CUDA
    device without an index, the GPU of this rank (``torch.cuda.current_device()``, set by
    :func:`fastreid_ext.engine.launch.launch`)."""
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None and torch.cuda.is_available():
        dev = torch.device("cuda", torch.cuda.current_device())
    return dev
