"""invdesign: generative inverse design of crystals and molecules."""

__version__ = "0.1.0"

__all__ = ["__version__", "generate", "load"]


def load(name_or_path="mp-binary", *, surrogate="auto"):
    """A `Designer` (sample, optimize) from a shipped generator name or checkpoint folder."""
    from invdesign.api import load as _load

    return _load(name_or_path, surrogate=surrogate)


def generate(objective="E * alpha", n=100, **kwargs):
    """Optimise `objective` with the shipped models; see `invdesign.api.generate`."""
    from invdesign.api import generate as _generate

    return _generate(objective, n, **kwargs)
