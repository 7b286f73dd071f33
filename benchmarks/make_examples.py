"""Write the example models shipped inside the package (ptq_verify/examples/).

The same seeded digits models as the benchmark (train_digits.py, which needs torch), each with
its 256 calibration images, so that `ptq-verify quantize cnn_sigmoid -o q.onnx` works from the
README's install alone: the committed files are plain ONNX and .npz, and using them needs no
torch. The .npz files are compressed and carry a fixed timestamp, so regenerating gives the
same bytes when training does.

Run:  python benchmarks/make_examples.py      (after pip install -e '.[bench]')
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
from models import INPUT_NAME, TOPOLOGIES
from train_digits import model_files, train_all

EXAMPLES = Path(__file__).resolve().parent.parent / "ptq_verify" / "examples"
FIXED_TIME = (2026, 1, 1, 0, 0, 0)


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    """np.savez_compressed with a fixed member timestamp (numpy stamps the current time)."""
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=EXAMPLES, help="(ptq_verify/examples)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as work:
        train_all(Path(work))
        for topology in TOPOLOGIES:
            model, calibration, _ = model_files(topology.name, Path(work))
            (args.out / model.name).write_bytes(model.read_bytes())
            with np.load(calibration) as data:
                write_npz(args.out / calibration.name, **{INPUT_NAME: data[INPUT_NAME]})
    print(f"wrote {2 * len(TOPOLOGIES)} files to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
