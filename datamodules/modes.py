"""The M / S / MS forecasting modes of the long-horizon benchmarks (Informer, Autoformer, TSLib).

M: every channel in and out; S: the target channel in and out; MS: every channel in, the target out.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import pandas as pd

from datamodules.errors import ConfigError, DataError
from datamodules.timeseries import WindowOptions

# mode -> (input channels, target channels) given all channels and the target channel.
MODES = {
    "M": lambda channels, target: (list(channels), list(channels)),
    "S": lambda channels, target: ([target], [target]),
    "MS": lambda channels, target: (list(channels), [target]),
}


@dataclass
class ModeOptions(WindowOptions):
    """A benchmark series, standard protocol.

    Args:
        mode: "M" all channels in and out, "S" the target channel in and out, "MS" all channels in, the target out.
        target: the channel forecast in modes S and MS (OT in every benchmark file).
    """

    lookback: int = 96
    horizon: int = 96
    mode: Literal["M", "S", "MS"] = "M"
    target: str = "OT"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.mode not in MODES:
            raise ConfigError(f"mode must be one of {list(MODES)}, got {self.mode!r}")


def mode_features(frame: pd.DataFrame, options: ModeOptions, source: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The model's (inputs, targets) columns of a frame of every channel; the values stay in raw units."""
    check_target(options.target, list(frame.columns), source)
    input_channels, target_channels = MODES[options.mode](frame.columns, options.target)
    return frame[input_channels], frame[target_channels]


def check_target(target: str, channels: Sequence[str], source: str) -> None:
    if target not in channels:
        raise DataError(f"{source}: target {target!r} is not one of its channels {list(channels)}; set data.target")
