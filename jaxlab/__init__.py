"""jaxlab: eight research results in one JAX/Flax codebase."""

__version__ = "0.1.0"
