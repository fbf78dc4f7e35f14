"""invdesign: generative inverse design of crystals and molecules."""

__version__ = "0.1.0"

__all__ = ["__version__"]
