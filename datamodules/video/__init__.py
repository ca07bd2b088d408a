"""Video datasets: clips of frames (moving-shapes, hmdb51-samples, video-folder) and pose-keypoint windows
(gestures). Importing this package registers them."""

from datamodules.video import datamodule  # noqa: F401  (video-folder)
from datamodules.video import gestures  # noqa: F401
from datamodules.video import hmdb51  # noqa: F401
from datamodules.video import moving_shapes  # noqa: F401
