"""models: per-timestep activity and fusion as ``torch.nn.Module`` objects, batched across streams.

* :class:`~models.video.VideoActivity`: S_v from frame differencing against a per-stream baseline;
* :class:`~models.audio.AudioActivity`: S_a from log-mel energy and spectral flux against a noise floor;
* :class:`~models.fusion.FusionModel`: S = alpha * S_v + beta * S_a with the missing-modality rule, slots;
* :func:`~models.batch.pack`: timesteps -> one batch, one host-to-device copy;
* :func:`~models.plugins.load_module`: a user's own encoder from ``package.module:Class`` and a local file.
"""

from .audio import AudioActivity
from .batch import ModelInput, pack
from .device import resolve_device
from .fusion import FusionModel, ModelOutput, fuse
from .plugins import load_module
from .video import VideoActivity

__all__ = [
    "AudioActivity",
    "FusionModel",
    "ModelInput",
    "ModelOutput",
    "VideoActivity",
    "fuse",
    "load_module",
    "pack",
    "resolve_device",
]
