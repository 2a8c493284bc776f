"""A batch sampler that runs for a fixed number of iterations, re-iterating its source as often as needed."""
import torch
from torch.utils.data.sampler import BatchSampler, RandomSampler


class IterationBasedBatchSampler(BatchSampler):
    """Yield batches from `batch_sampler` until iteration `num_iterations` (exclusive), starting at `start_iter`.

    The order of the batches is a function of the iteration alone: epoch e is shuffled from ``seed + e`` (through
    ``set_epoch`` for a DistributedSampler, through a fresh generator for a RandomSampler), and a run resumed at
    iteration k skips the first k batches of that sequence, so it sees exactly the batches an uninterrupted run
    sees from iteration k on. len() is num_iterations (the total length of training, as the trainer expects).

    Args:
        batch_sampler (BatchSampler): yields lists of dataset indices; its ``sampler`` may be a
            DistributedSampler (re-seeded with set_epoch) or a RandomSampler (given a per-epoch generator).
        num_iterations (int): total number of batches of the run (SOLVER.MAX_ITER).
        start_iter (int): batches already consumed (the resumed iteration).
        seed (int or None): base seed of the RandomSampler's per-epoch order; default ``torch.initial_seed()``
            at construction, i.e. SOLVER.SEED (+ rank) as set by train_net before building the loader.
    """

    def __init__(self, batch_sampler, num_iterations, start_iter=0, seed=None):
        self.batch_sampler = batch_sampler
        self.num_iterations = int(num_iterations)
        self.start_iter = int(start_iter)
        self.seed = int(torch.initial_seed() if seed is None else seed)

    def _begin_epoch(self, epoch):
        sampler = getattr(self.batch_sampler, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        elif isinstance(sampler, RandomSampler):
            # Without its own generator a RandomSampler draws its order from the global RNG, whose position at
            # the start of an epoch a resumed run cannot reproduce.
            sampler.generator = torch.Generator().manual_seed((self.seed + epoch) % (2 ** 63))

    def __iter__(self):
        iteration = 0
        epoch = 0
        while iteration < self.num_iterations:
            self._begin_epoch(epoch)
            yielded = False
            for batch in self.batch_sampler:
                if iteration >= self.num_iterations:
                    return
                yielded = True
                iteration += 1
                # Batches before start_iter are drawn (index lists only, no image is loaded) and dropped, so the
                # sampler's position follows from the iteration.
                if iteration > self.start_iter:
                    yield batch
            if not yielded:
                raise RuntimeError("IterationBasedBatchSampler: the wrapped batch sampler yielded no batch "
                                   "(empty dataset?)")
            epoch += 1

    def __len__(self):
        return self.num_iterations
