"""Without the optional extras (formats, tensorboard) cnnkit imports, predicts to CSV and DLC CSV, and
names the extra when a feature needs it. One real subprocess: the packages are blocked before import."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent('''
    import sys, importlib.abc, importlib.util
    BLOCKED = {"pynwb", "ndx_pose", "sleap_io", "tables", "h5py", "tensorboard", "movement"}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(name)
            return None

    sys.meta_path.insert(0, Block())
    real_find_spec = importlib.util.find_spec
    importlib.util.find_spec = lambda name, *a: None if name.split(".")[0] in BLOCKED else real_find_spec(name, *a)

    from pathlib import Path
    import numpy as np, pandas as pd
    import cnnkit, cnnkit.cli, cnnkit.train.tensorboard
    from cnnkit.data.sources import read_annotations
    from cnnkit.errors import ConfigError
    from cnnkit.infer.formats import PredictionMeta, write_predictions

    out = Path(sys.argv[1])
    df = pd.DataFrame({"frame": [0, 1], "time_s": [0.0, 0.5], "a_x": [1.0, np.nan], "a_y": [2.0, 3.0],
                       "a_likelihood": [0.9, 0.1]})
    meta = PredictionMeta(("a",), out / "m.safetensors", (out / "v.mp4",))
    print("written", [p.name for p in write_predictions(df, out / "p.csv", "csv,dlc", meta)])
    for call in (lambda: write_predictions(df, out / "p.csv", "nwb", meta),
                 lambda: cnnkit.train.tensorboard.TensorBoardLog(out)):
        try:
            call()
        except ConfigError as exc:
            print("error", exc)
    slp = out / "labels.slp"
    slp.write_bytes(b"\\x89HDF\\r\\n\\x1a\\n" + bytes(100))
    try:
        read_annotations(slp)
    except ConfigError as exc:
        print("error", exc)
''')


def test_core_works_and_extras_are_named_without_the_optional_packages(tmp_path) -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    tag = re.sub(r"[^A-Za-z0-9_-]+", "-", f"{tmp_path.name}-m")
    assert f"written ['p.csv', 'vDLC_cnnkit_{tag}.csv']" in lines  # no PyTables: DeepLabCut's CSV, no .h5
    errors = [line for line in lines if line.startswith("error")]
    assert len(errors) == 3
    assert "--format nwb needs pynwb, ndx_pose: pip install 'cnnkit[formats]'" in errors[0]
    assert "pip install 'cnnkit[tensorboard]'" in errors[1]
    assert "needs h5py and sleap-io: pip install 'cnnkit[formats]'" in errors[2]
