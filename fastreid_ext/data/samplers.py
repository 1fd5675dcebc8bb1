"""Identity-balanced ``P x K`` sampler over tracklets (distributed-aware), and the inference
sampler.

Each *global* batch holds ``P`` identities x ``K`` tracklets (``SOLVER.IMS_PER_BATCH = P * K``,
``DATALOADER.NUM_INSTANCE = K``), grouped by identity. Every rank builds the same global
batches from the same seed and keeps the contiguous share ``[r * B / W, (r + 1) * B / W)``, so
the ranks' shares of a global batch are disjoint, each holds whole identities (``P`` must be a
multiple of the world size), and together they cover the global batch. Like the host's
``NaiveIdentitySampler`` it is an infinite stream: one "epoch" of identities uses each
identity's tracklets in chunks of ``K`` (shuffled; an identity with fewer than ``K`` tracklets
draws ``K`` with replacement) until fewer than ``P`` identities have a chunk left.
"""
from __future__ import annotations

import itertools
from collections import defaultdict
from typing import Dict, Iterator, List, Optional, Sequence

import numpy as np
from torch.utils.data import Sampler

from fastreid.data.samplers import InferenceSampler  # noqa: F401  (re-exported for test loaders)
from fastreid.utils import comm


class IdentityBalancedSampler(Sampler):
    """Infinite stream of indices into ``data_source`` (items with the pid at position 1).

    Args:
        data_source: the items (``(frame_paths, pid, camid[, extras])``).
        batch_size: the *global* batch size ``P * K`` (``SOLVER.IMS_PER_BATCH``).
        num_instances: ``K`` tracklets per identity.
        seed: shared by all ranks; ``None`` draws one with ``comm.shared_random_seed()``.
        rank, world_size: default to ``fastreid.utils.comm``.
    """

    def __init__(
        self,
        data_source: Sequence,
        batch_size: int,
        num_instances: int,
        seed: Optional[int] = None,
        rank: Optional[int] = None,
        world_size: Optional[int] = None,
    ):
        self._rank = comm.get_rank() if rank is None else int(rank)
        self._world_size = comm.get_world_size() if world_size is None else int(world_size)
        if num_instances < 1 or batch_size % num_instances:
            raise ValueError(
                f"batch size {batch_size} (SOLVER.IMS_PER_BATCH) must be a multiple of "
                f"K={num_instances} (DATALOADER.NUM_INSTANCE)"
            )
        self.num_instances = int(num_instances)
        self.batch_size = int(batch_size)
        self.num_pids_per_batch = self.batch_size // self.num_instances
        if self.num_pids_per_batch % self._world_size:
            raise ValueError(
                f"P={self.num_pids_per_batch} identities per batch must be a multiple of the "
                f"world size {self._world_size} so every rank gets whole identities"
            )
        self.mini_batch_size = self.batch_size // self._world_size

        pid_index: Dict[object, List[int]] = defaultdict(list)
        for index, item in enumerate(data_source):
            pid_index[item[1]].append(index)
        self.pids = sorted(pid_index, key=str)
        self.pid_index = {p: pid_index[p] for p in self.pids}
        if len(self.pids) < self.num_pids_per_batch:
            raise ValueError(
                f"{len(self.pids)} identities cannot fill P={self.num_pids_per_batch} identities per batch"
            )
        self._seed = int(comm.shared_random_seed() if seed is None else seed)

    def global_batches(self) -> Iterator[List[int]]:
        """The infinite stream of global batches (identical on every rank)."""
        rng = np.random.default_rng(self._seed)
        K, P = self.num_instances, self.num_pids_per_batch
        while True:
            chunks: Dict[int, List[List[int]]] = {}
            for k, pid in enumerate(self.pids):
                idxs = list(self.pid_index[pid])
                if len(idxs) < K:
                    idxs = rng.choice(idxs, size=K, replace=True).tolist()
                else:
                    idxs = rng.permutation(idxs).tolist()
                chunks[k] = [idxs[i:i + K] for i in range(0, len(idxs) - K + 1, K)]
            while True:
                available = [k for k, c in chunks.items() if c]
                if len(available) < P:
                    break
                chosen = rng.choice(available, size=P, replace=False)
                yield [int(i) for k in chosen for i in chunks[int(k)].pop()]

    def __iter__(self) -> Iterator[int]:
        lo = self._rank * self.mini_batch_size
        hi = lo + self.mini_batch_size
        for batch in self.global_batches():
            yield from batch[lo:hi]

    def take(self, num_batches: int) -> List[List[int]]:
        """The first ``num_batches`` mini-batches of this rank (inspection, tests)."""
        it = iter(self)
        return [list(itertools.islice(it, self.mini_batch_size)) for _ in range(num_batches)]


__all__ = ["IdentityBalancedSampler", "InferenceSampler"]
