"""cosearch: hardware-software co-design of Transformer LMs and Gemmini accelerators."""

__version__ = "0.1.0"
