"""The ULTIMUS attention network of EVA8 session 9."""
from .model_9 import PRESETS, ModelConfig, Net, UltimusBlock, count_parameters

__all__ = ["PRESETS", "ModelConfig", "Net", "UltimusBlock", "count_parameters"]
