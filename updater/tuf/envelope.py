# Opening one metadata file: the JSON "traditional" envelope or DSSE, as
# python-tuf's ngclient (UpdaterConfig.envelope_type):
# - ENVELOPE_METADATA (default): {"signed": {...}, "signatures": [{"keyid",
#   "sig" (hex)}]}; signatures are over the canonical JSON of "signed".
# - ENVELOPE_SIMPLE: a DSSE envelope (dsse.py).
# `load(data, expected_type)` takes bytes, or an open binary file parsed
# straight from the stream so that the raw bytes never sit in RAM, and
# validates the signed part with the metadata model (metadata.py).
from updater.tuf.errors import FormatError
from updater.tuf.hashes import is_stream as _is_stream
from updater.tuf.metadata import fail as _fail, parse_json as _parse_json
from updater.tuf.metadata import CLASSES

# Envelope types (the values of UpdaterConfig.envelope_type and of the CLI's
# --envelope-type option).
ENVELOPE_METADATA = "metadata"
ENVELOPE_SIMPLE = "simple"
ENVELOPE_TYPES = (ENVELOPE_METADATA, ENVELOPE_SIMPLE)


class EnvelopeType:
    """Values of UpdaterConfig.envelope_type (as ngclient's EnvelopeType)."""

    METADATA = ENVELOPE_METADATA
    SIMPLE = ENVELOPE_SIMPLE


def load(data, expected_type, envelope=ENVELOPE_METADATA):
    """Parse metadata of the given top-level type ('root', 'timestamp',
    'snapshot', 'targets' - delegated roles are 'targets') wrapped in the
    given envelope type (ENVELOPE_METADATA or ENVELOPE_SIMPLE = DSSE).

    `data` is bytes, or a binary file object (parsed straight from the
    stream, so the raw file never sits in RAM next to its parsed form).
    Returns (signed object, signed part, {keyid: sig hex str}); the signed
    part is what check_signatures() verifies: the signed dict (its
    canonical JSON was signed) or a DssePayload (its PAE was signed).
    Raises FormatError (a RepositoryError) on anything malformed."""
    if envelope not in ENVELOPE_TYPES:
        raise ValueError("unknown envelope type %r" % envelope)
    if envelope == ENVELOPE_SIMPLE:
        if not (_is_stream(data) or isinstance(data, (bytes, bytearray, memoryview))):
            raise FormatError("not JSON: metadata must be bytes or a binary file")
        from updater.tuf import dsse  # only DSSE repositories pay its heap

        signed, signed_part, sigs = dsse.open_envelope(data)
        data = None
        if not isinstance(signed, dict):
            _fail("DSSE payload must be a JSON object")
        return _finish_load(signed, signed_part, sigs, expected_type)
    doc = _parse_json(data)
    data = None
    if not isinstance(doc, dict):
        _fail("metadata must be a JSON object")
    if "payload" in doc and "signed" not in doc:
        _fail("expected traditional TUF metadata, got a DSSE envelope")
    signed = doc.get("signed")
    sigs = doc.get("signatures")
    doc = None
    if not isinstance(signed, dict):
        _fail("metadata lacks a 'signed' object")
    if not isinstance(sigs, list):
        _fail("metadata lacks a 'signatures' list")
    return _finish_load(signed, signed, sigs, expected_type)


def _finish_load(signed, signed_part, sigs, expected_type):
    signatures = {}
    for s in sigs:
        if not isinstance(s, dict):
            _fail("signature must be an object")
        keyid = s.get("keyid")
        sig = s.get("sig")
        if not isinstance(keyid, str) or not isinstance(sig, str):
            _fail("signature needs string 'keyid' and 'sig'")
        if keyid in signatures:
            _fail("multiple signatures for keyid %s" % keyid)
        signatures[keyid] = sig
    cls = CLASSES.get(expected_type)
    if cls is None:
        raise ValueError("unknown metadata type %r" % expected_type)
    obj = cls(signed)
    return obj, signed_part, signatures
