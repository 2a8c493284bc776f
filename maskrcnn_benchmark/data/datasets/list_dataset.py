"""A dataset over a plain list of images (e.g. for running a trained model on your own pictures)."""
import torch

from maskrcnn_benchmark.data.image_io import from_pil_image, image_size, read_image, read_image_size


class ListDataset(torch.utils.data.Dataset):
    """Images given as file paths or PIL images, read as ``data.image_io`` reads them (EXIF orientation applied,
    more than 8 bits kept as float Tensor[3, H, W]); targets are empty BoxLists.

    Args:
        image_lists (list[str or PIL.Image]): the images.
        transforms (callable or None): f(image, target) -> (image, target).
    """

    def __init__(self, image_lists, transforms=None):
        self.image_lists = list(image_lists)
        self.transforms = transforms

    def _image(self, item):
        return read_image(item) if isinstance(item, str) else from_pil_image(item)

    def __getitem__(self, idx):
        from maskrcnn_benchmark.structures.bounding_box import BoxList

        image = self._image(self.image_lists[idx])
        target = BoxList(torch.zeros((0, 4)), image_size(image), mode="xyxy")
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target, idx

    def __len__(self):
        return len(self.image_lists)

    def get_img_info(self, idx):
        """{"height", "width"} of image `idx` (after its EXIF orientation; a file's header is read)."""
        item = self.image_lists[idx]
        width, height = read_image_size(item) if isinstance(item, str) else image_size(from_pil_image(item))
        return {"height": height, "width": width}
