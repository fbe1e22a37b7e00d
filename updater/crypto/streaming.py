# Streaming verification for signature schemes over SHA-256 (ECDSA P-256,
# RSA-PSS): the signed bytes are hashed as they stream in, then the key
# checks the digest. load_key(key).begin(sig) -> update(...) -> finish().
import hashlib


class Sha256Verify:
    def __init__(self, key, signature):
        self._key = key
        self._sig = signature
        self._h = hashlib.sha256()

    def update(self, data):
        self._h.update(data)

    def finish(self):
        return self._key.verify_digest(self._sig, self._h.digest())
