"""antlr-exp: train spiking neural networks with activation-based, timing-based and ANTLR gradients."""

__version__ = "0.1.0"
