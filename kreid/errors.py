"""Specific exception types. Every message says what was expected and where."""


class KreidError(Exception):
    """Base class of kreid's own errors."""


class DatasetLayoutError(KreidError, FileNotFoundError):
    """A dataset folder or annotation file is missing or does not parse."""


class ConfigError(KreidError, KeyError):
    """A config names a key (override, loss term, option, source) kreid does not have."""

    def __str__(self) -> str:        # KeyError would quote the message
        return str(self.args[0])


class ConfigValueError(KreidError, ValueError):
    """A config key holds a value kreid does not accept; names the key and the choices."""


class ConfigTypeError(KreidError, TypeError):
    """A config key holds a value of the wrong type; names the key and the expected type."""


class EmptySplitError(KreidError, ValueError):
    """A split (train/query/gallery) holds no usable records."""


class ImageReadError(KreidError, IOError):
    """An image file is missing, unreadable or not a decodable image."""


class SamplerError(KreidError, ValueError):
    """PK sampling is impossible with the given identities, P and K."""


class ModelMismatchError(KreidError, ValueError):
    """Embeddings made by different models (fingerprints differ) are being compared."""


class NonFiniteError(KreidError, FloatingPointError):
    """A loss, gradient, weight or checkpoint holds NaN or inf; names the step and term."""


class ForeignDataError(KreidError, FileExistsError):
    """kreid was asked to write where files it did not write already stand; names one."""
