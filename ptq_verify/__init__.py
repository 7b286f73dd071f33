"""ptq-verify: prove which operators a PTQ pipeline may pass a scaling factor through.

``Operator`` and ``TensorInput`` load sympy on first use, not on ``import ptq_verify``, so the
command line parses its arguments (and prints help or a usage error) without it.
"""

from importlib import import_module

__all__ = ["Operator", "TensorInput", "__version__"]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in ("Operator", "TensorInput"):
        return getattr(import_module(".catalog.operator", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
