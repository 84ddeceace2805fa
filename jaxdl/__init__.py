"""jaxdl: the deep-learning theory of training (Goodfellow, Bengio & Courville) as fast, exact, runnable JAX code.

Subpackages: ``jaxdl.data``, ``jaxdl.models``, ``jaxdl.train``, ``jaxdl.experiments``, ``jaxdl.report``; the curvature
analysis lives in the sibling package ``analysis``.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
