"""The ULTIMUS attention network of EVA8 session 9."""
from .model_9 import ModelConfig, Net, UltimusBlock

__all__ = ["ModelConfig", "Net", "UltimusBlock", "count_parameters"]


def count_parameters(model):
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
