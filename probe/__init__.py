"""probe: an interpretability and robustness workbench for vision architectures."""
__version__ = "0.1.0"
