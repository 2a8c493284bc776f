"""Box and mask discriminators of Le et al., "Instance Semantic Segmentation Benefits from GANs"."""
from .adversarial_discriminators import AdversarialDiscriminators, DiscriminatorBatches
from .box_discriminator import BoxDiscriminator
from .build import build_discriminators
from .feature_pooling import RoIFeaturePooler
from .mask_discriminator import MaskDiscriminator

__all__ = [
    "AdversarialDiscriminators",
    "DiscriminatorBatches",
    "BoxDiscriminator",
    "MaskDiscriminator",
    "RoIFeaturePooler",
    "build_discriminators",
]
