"""Factory provisioning: a device identity from the fleet PKI written into a
board's flash over its UART (pyserial raw REPL), then the console locked."""
from .bundle import BrokerAddress, Bundle, build_bundle, check_tuf_root, load_config_file, merge_config
from .errors import BoardLocked, ModelMismatch, ProvisionError, TransferError
from .provision import ProvisionResult, broker_from_workdir, provision
from .repl import ReplSession

__all__ = [
    "BoardLocked",
    "BrokerAddress",
    "Bundle",
    "ModelMismatch",
    "ProvisionError",
    "ProvisionResult",
    "ReplSession",
    "TransferError",
    "broker_from_workdir",
    "build_bundle",
    "check_tuf_root",
    "load_config_file",
    "merge_config",
    "provision",
]
