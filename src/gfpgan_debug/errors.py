"""The project's errors. Each names the file and the problem; the command line turns them into exit code 2."""


class GfpganDebugError(Exception):
    """Base class: a problem with the user's input that the user can fix, reported without a traceback."""


class CheckpointError(GfpganDebugError):
    """A weights file that cannot be read, or does not fit the model."""


class ImageError(GfpganDebugError):
    """An image file that cannot be read or used."""


class ArtifactError(GfpganDebugError):
    """An exported model (TorchScript, ONNX) that cannot be used."""


class DownloadError(GfpganDebugError):
    """A download that failed or whose content is not what was published."""
