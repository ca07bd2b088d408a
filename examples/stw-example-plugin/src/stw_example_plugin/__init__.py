"""An example stw plugin: the `noisy-sine` dataset and the `last_linear` model family.

Installed, its entry points (pyproject.toml) register both; uninstalled, `stw --plugin stw_example_plugin` with
src/ on PYTHONPATH does the same, since importing the package imports both modules.
"""

from stw_example_plugin import last_linear, noisy_sine

__all__ = ["last_linear", "noisy_sine"]
