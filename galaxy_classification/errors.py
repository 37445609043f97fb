"""The project's error types and its note category, defined once.

Library functions raise these; the command line (:mod:`galaxy_classification.cli`)
alone turns them into one line on stderr and an exit code. A notebook catches
them by type::

    from galaxy_classification.errors import GalaxyClassificationError
    try:
        quick_cnn_trainer.train(data="no-such-folder")
    except GalaxyClassificationError as error:
        print(error)

Notes (a thumbnail too small for the model, frames without colour, a field of
view assumed) are warnings of the category :class:`GalaxyNote`, so a caller can
filter or silence them::

    import warnings
    warnings.simplefilter("ignore", GalaxyNote)
"""

import warnings


class GalaxyClassificationError(Exception):
    """Anything this project reports as a failure of the request rather than of the code."""


class UsageError(GalaxyClassificationError, ValueError):
    """An argument, option or setting the project cannot use; the message names it and what is allowed."""


class DataFileError(UsageError):
    """A data file or input is missing, truncated, unreadable or does not match its neighbours."""


class CatalogueError(DataFileError):
    """A catalogue row or column the classifier cannot use."""


class ModelFileError(UsageError):
    """A saved model that cannot be read or cannot serve the request."""


class PeerLost(GalaxyClassificationError, RuntimeError):
    """A multi-worker training worker stopped hearing from the others."""


class SDSSQueryError(GalaxyClassificationError):
    """An SDSS service failed, or answered with an error instead of data.

    ``status_code`` is the HTTP status (None when no reply arrived);
    ``transient`` says whether trying again later may help; ``retry_after`` is
    the least wait in seconds the service asked for; ``max_retries`` caps the
    tries of a failure that is transient only a few times.
    """

    def __init__(self, message, status_code=None, transient=False, retry_after=None, max_retries=None):
        super().__init__(message)
        self.status_code = status_code
        self.transient = transient
        self.retry_after = retry_after
        self.max_retries = max_retries


class CutoutBodyError(SDSSQueryError):
    """A cutout reply whose body was cut off or is not a JPEG: worth another try."""

    def __init__(self, message):
        super().__init__(message, status_code=200, transient=True)


class GalaxyNote(UserWarning):
    """Something a user should know about a result that is still given (the command line prints 'note: ...')."""


def note(message: str) -> None:
    """Tell the user ``message`` as a :class:`GalaxyNote` warning."""
    warnings.warn(message, GalaxyNote, stacklevel=3)
