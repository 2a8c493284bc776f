"""A dataset over a plain list of images (e.g. for running a trained model on your own pictures)."""
import torch
from PIL import Image


class ListDataset(torch.utils.data.Dataset):
    """Images given as file paths or PIL images; targets are empty BoxLists.

    Args:
        image_lists (list[str or PIL.Image]): the images.
        transforms (callable or None): f(image, target) -> (image, target).
    """

    def __init__(self, image_lists, transforms=None):
        self.image_lists = list(image_lists)
        self.transforms = transforms

    def _image(self, item):
        if isinstance(item, str):
            try:
                with Image.open(item) as im:
                    return im.convert("RGB")
            except FileNotFoundError:
                raise FileNotFoundError("Image file not found: '{}'".format(item))
            except Exception as e:
                raise OSError("Cannot read image file '{}': {}".format(item, e)) from e
        return item.convert("RGB")

    def __getitem__(self, idx):
        from maskrcnn_benchmark.structures.bounding_box import BoxList

        image = self._image(self.image_lists[idx])
        target = BoxList(torch.zeros((0, 4)), image.size, mode="xyxy")
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target, idx

    def __len__(self):
        return len(self.image_lists)

    def get_img_info(self, idx):
        """{"height", "width"} of image `idx` (opens the file)."""
        width, height = self._image(self.image_lists[idx]).size
        return {"height": height, "width": width}
