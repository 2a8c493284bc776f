"""A batch sampler that runs for a fixed number of iterations, re-iterating its source as often as needed."""
from torch.utils.data.sampler import BatchSampler


class IterationBasedBatchSampler(BatchSampler):
    """Yield batches from `batch_sampler` until iteration `num_iterations` (exclusive), starting at `start_iter`.

    A run resumed at iteration k therefore yields num_iterations - k batches. len() is num_iterations (the total
    length of training, as the trainer expects). Between passes over the data the wrapped sampler's set_epoch is
    called, when it has one, so distributed shuffling changes every epoch.
    """

    def __init__(self, batch_sampler, num_iterations, start_iter=0):
        self.batch_sampler = batch_sampler
        self.num_iterations = int(num_iterations)
        self.start_iter = int(start_iter)

    def __iter__(self):
        iteration = self.start_iter
        epoch = 0
        while iteration < self.num_iterations:
            sampler = getattr(self.batch_sampler, "sampler", None)
            if hasattr(sampler, "set_epoch"):
                sampler.set_epoch(epoch)
            yielded = False
            for batch in self.batch_sampler:
                if iteration >= self.num_iterations:
                    return
                yielded = True
                iteration += 1
                yield batch
            if not yielded:
                raise RuntimeError("IterationBasedBatchSampler: the wrapped batch sampler yielded no batch "
                                   "(empty dataset?)")
            epoch += 1

    def __len__(self):
        return self.num_iterations
