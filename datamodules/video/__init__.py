"""Video datasets: clips of frames (moving-shapes, hmdb51-samples, video-folder) and pose-keypoint windows
(gestures). Importing this package registers them."""

from datamodules.video import (
    datamodule,  # noqa: F401  (video-folder)
    gestures,  # noqa: F401
    hmdb51,  # noqa: F401
    moving_shapes,  # noqa: F401
)
