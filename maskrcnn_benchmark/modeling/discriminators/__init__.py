"""Box and mask discriminators of Le et al., "Instance Semantic Segmentation Benefits from GANs"."""
from .box_discriminator import BoxDiscriminator
from .build import AdversarialDiscriminators, build_discriminators
from .feature_pooling import RoIFeaturePooler
from .mask_discriminator import MaskDiscriminator

__all__ = [
    "AdversarialDiscriminators",
    "BoxDiscriminator",
    "MaskDiscriminator",
    "RoIFeaturePooler",
    "build_discriminators",
]
