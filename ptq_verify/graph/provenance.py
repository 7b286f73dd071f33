"""The doc string ptq-verify writes into a quantized file, and that file recognized when it
comes back as a model to quantize.

A file ``quantize`` wrote is quantized already. Its qdq and integer forms hold 8-bit codes,
refused by their undeclared QuantizeLinear or integer nodes, but the simulation form is float
arithmetic on declared operators only (Round, Clip, Mul): fed back to ``quantize`` it was
quantized again (43 dB against itself), with nothing said that it was not the float model.
"""

from __future__ import annotations

import re

FORMS = ("qdq", "integer", "simulation")
# what quantized_doc writes, whole, in ASCII digits: a user's own doc string that only begins
# so ("ptq-verify 8-bit model (float); my notes", a fullwidth 8, a 23-digit width) had been
# taken for one and the float model refused as quantized already
_DOC = re.compile(r"ptq-verify ([0-9]{1,2})-bit model \((" + "|".join(FORMS)
                  + r")\); outputs are (?:integer codes|float \(dequantized\))")


def quantized_doc(bits: int, form: str, integer_outputs: bool) -> str:
    """The doc string of a file ``quantize`` writes in ``form`` (qdq, integer, simulation)."""
    outputs = "integer codes" if integer_outputs else "float (dequantized)"
    return f"ptq-verify {bits}-bit model ({form}); outputs are {outputs}"


def written_quantized(doc_string: str) -> str:
    """What a file's doc string says it is when ``quantize`` wrote it (``8-bit simulation``),
    else '': the whole string as :func:`quantized_doc` writes it, in one of FORMS."""
    match = _DOC.fullmatch(doc_string)
    return f"{match[1]}-bit {match[2]}" if match else ""
