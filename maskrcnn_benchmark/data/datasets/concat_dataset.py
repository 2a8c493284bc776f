"""Concatenation of datasets that keeps get_img_info (needed for aspect-ratio grouping)."""
import bisect

from torch.utils.data.dataset import ConcatDataset as _ConcatDataset


class ConcatDataset(_ConcatDataset):
    """torch ConcatDataset plus get_idxs / get_img_info mapping a global index to (dataset, local index)."""

    def get_idxs(self, idx):
        """Return (dataset index, sample index inside that dataset) of global index `idx`."""
        dataset_idx = bisect.bisect_right(self.cumulative_sizes, idx)
        sample_idx = idx if dataset_idx == 0 else idx - self.cumulative_sizes[dataset_idx - 1]
        return dataset_idx, sample_idx

    def get_img_info(self, idx):
        """Image record ({"height", "width", ...}) of global index `idx`."""
        dataset_idx, sample_idx = self.get_idxs(idx)
        return self.datasets[dataset_idx].get_img_info(sample_idx)
