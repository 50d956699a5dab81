"""Exceptions raised for users: one type per kind of mistake, each message says the fix.

The CLI prints any :class:`S2RError` as one line and exits non-zero; anything else
is a bug and keeps its traceback.
"""


class S2RError(Exception):
    """Base of every error a user can cause and fix."""


class UnknownNameError(S2RError):
    """A refiner, dataset, task or budget name that nothing registered."""


class DuplicateNameError(S2RError):
    """Two plugins registered the same name."""


class ConfigError(S2RError):
    """A malformed spec, override or setting."""


class DataError(S2RError):
    """Input data that is missing, corrupt or of the wrong shape."""


class TrackingError(S2RError):
    """The MLflow tracking location cannot be used."""


class DeviceError(S2RError):
    """A requested device that this machine does not have."""


class FitFailure(S2RError):
    """A refiner fit that diverged or collapsed; it never produces a result row."""


class ClusterError(S2RError):
    """A Ray cluster that cannot be used: Ray not installed, no cluster at the address, a job no node can hold."""
