"""DBNet text detection with timm HRNet backbones, and the sweep launcher that tunes it."""

__version__ = "0.1.0"
