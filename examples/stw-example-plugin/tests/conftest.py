"""The example's tests run installed (pip install -e examples/stw-example-plugin) or straight from its src/."""

import importlib.util
import sys
from pathlib import Path

if importlib.util.find_spec("stw_example_plugin") is None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
