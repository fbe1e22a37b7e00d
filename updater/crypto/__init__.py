# Pure-MicroPython crypto for the TUF client: canonical JSON, sha512, signature verification.
