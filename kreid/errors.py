"""Specific exception types. Every message says what was expected and where."""


class KreidError(Exception):
    """Base class of kreid's own errors."""


class DatasetLayoutError(KreidError, FileNotFoundError):
    """A dataset folder or annotation file is missing or does not parse."""


class EmptySplitError(KreidError, ValueError):
    """A split (train/query/gallery) holds no usable records."""


class ImageReadError(KreidError, IOError):
    """An image file is missing, unreadable or not a decodable image."""


class SamplerError(KreidError, ValueError):
    """PK sampling is impossible with the given identities, P and K."""
