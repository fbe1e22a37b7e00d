"""Typed exceptions of the release library.

Every failure a user can cause derives from :class:`ReleaseError`; the CLI turns
each into a ``click.ClickException`` with the message unchanged. Operations that
raise one of these leave the repository exactly as it was.
"""
from __future__ import annotations


class ReleaseError(Exception):
    """Root of every error the release tooling reports to its user."""


class ConfigError(ReleaseError):
    """Bad configuration value (duration, threshold, key type, model name...)."""


class NotInitialized(ReleaseError):
    """The work directory has no keys or no repository yet."""


class AlreadyInitialized(ReleaseError):
    """`keys init` on a work directory that already holds keys or a repository."""


class KeyFileError(ReleaseError):
    """Root of key-handling errors."""


class MissingKey(KeyFileError):
    """A key file (or enough of them to reach a threshold) is not there."""


class MissingPassphrase(KeyFileError):
    """No passphrase was supplied for a key and none could be prompted for."""


class WrongPassphrase(KeyFileError):
    """The passphrase does not decrypt the key file."""


class WeakPassphrase(KeyFileError):
    """A new passphrase is too short, or reused between root keys."""


class KeyMismatch(KeyFileError):
    """The key file on disk is not the key the repository trusts for that role."""


class RepositoryError(ReleaseError):
    """The on-disk repository is inconsistent, badly signed or unusable."""


class RootExpired(RepositoryError):
    """The newest root metadata has expired: rotate root before publishing."""


class RepositoryLocked(RepositoryError):
    """Another medsentry process holds the repository lock for too long."""


class UnknownModel(ReleaseError):
    """No delegated targets role exists for the device model."""


class ModelExists(ReleaseError):
    """`keys add-model` for a model that already has a role."""


class VersionNotIncreasing(ReleaseError):
    """The release version is not above the last one published for the model."""


class CounterNotIncreasing(ReleaseError):
    """The security counter is not above the last one published for the model."""


class UnknownRelease(ReleaseError):
    """The version to recall is not published (or already recalled)."""


class PackageError(ReleaseError):
    """Root of package errors."""


class PackageFormatError(PackageError):
    """The file is not a well-formed medsentry package."""


class PackageIntegrityError(PackageError):
    """A file inside the package does not match its manifest entry."""


class BuildError(PackageError):
    """Building a package failed (bad source, mpy-cross error, missing base)."""


class SlotTooSmall(PackageError):
    """The package's files cannot fit its model's application slot."""
