"""ptq-verify: prove which operators a PTQ pipeline may pass a scaling factor through."""

from .catalog.operator import Operator, TensorInput

__all__ = ["Operator", "TensorInput", "__version__"]
__version__ = "0.1.0"
