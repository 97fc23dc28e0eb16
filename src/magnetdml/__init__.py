"""magnetdml: deep distance metric learning with Magnet Loss (Rippel et al., ICLR 2016)."""

from .losses import LOSSES, MagnetLoss, build_loss, magnet_loss_terms

__version__ = "0.1.0"

__all__ = ["LOSSES", "MagnetLoss", "__version__", "build_loss", "magnet_loss_terms"]
