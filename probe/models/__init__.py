"""Architectures timm lacks: FNet for vision and a small ResNet for 28x28 inputs."""
from .cnn import BasicBlock, SmallResNet
from .fnet import FNetBlock, FourierMixing, fourier_mixing_matrix

__all__ = ["BasicBlock", "SmallResNet", "FNetBlock", "FourierMixing", "fourier_mixing_matrix"]
