# Installer errors. Two roots, as everywhere on the device:
#   InstallError (ValueError): bad data or a refusal - retrying the same
#     package will fail the same way (bad package, wrong model, counter too low);
#     except TransferError: bytes that are not the signed ones (retry);
#   transport failures are updater.tuf.errors.DownloadError (retry later).


class InstallError(ValueError):
    pass


class PackageError(InstallError):
    # The package bytes are not what the TUF-verified manifest hash promises,
    # or the package is malformed.
    pass


class TransferError(PackageError):
    # The bytes received are not the ones the signed metadata promises (a
    # flipped bit on the way, a broken or hostile mirror, a slot that no
    # longer verifies after writing): the release is not at fault. Nothing
    # of them is kept; the install is retried from a clean download.
    pass


class PolicyError(InstallError):
    # A valid package this device must refuse (model, security counter,
    # minimum base version, version not newer).
    pass


class SlotError(InstallError):
    # The inactive slot could not be assembled (e.g. a patch's base file in
    # the active slot does not match the manifest) or ran out of space.
    pass
