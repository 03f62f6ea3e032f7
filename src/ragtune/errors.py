"""One error family for everything a user can get wrong.

The CLI and the server print ``str(error)``: one line that names the file or field,
says what is wrong and what to do. Never a traceback for bad input.
"""


class RagtuneError(Exception):
    """A user-facing error; the message says what to do."""


class InputError(RagtuneError):
    """A file, dataset row or request that cannot be used as given."""


class CheckpointMismatch(InputError):
    """A checkpoint made with other data or settings than the run asked to resume it."""


class ConfigError(RagtuneError):
    """A setting in ragtune.toml, the environment or a flag that is invalid."""


class ModelError(RagtuneError):
    """A model or endpoint that cannot be loaded or reached."""


class TrainingError(RagtuneError):
    """Training that cannot go on (a diverging loss); the message says which setting to change."""


class StorageError(RagtuneError):
    """A knowledge base that cannot be written (full disk, read-only folder); what was stored is kept."""


class PromptTooLongError(InputError):
    """A prompt longer than the model's context window: the request's fault (a server answers 400), not the model's."""
