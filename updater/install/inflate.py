# Streaming zlib inflate with a small window, on both runtimes:
# MicroPython's deflate.DeflateIO, or zlib.decompressobj on CPython.
from board.compat import IS_MICROPYTHON


class _ZlibReader:
    # CPython stand-in for deflate.DeflateIO(stream, ZLIB, wbits).
    def __init__(self, stream, wbits):
        import zlib

        self.stream = stream
        self.d = zlib.decompressobj(wbits)
        self.pending = b""
        self.done = False
        self.zlib = zlib

    def readinto(self, buf):
        while not self.pending and not self.done:
            chunk = self.stream.read(512)
            if not chunk:
                self.pending = self.d.flush()
                self.done = True
                if not self.d.eof:
                    raise ValueError("truncated compressed data")
                break
            try:
                self.pending = self.d.decompress(chunk)
            except self.zlib.error as e:
                raise ValueError("corrupt compressed data: %s" % e)
        n = min(len(buf), len(self.pending))
        buf[:n] = self.pending[:n]
        self.pending = self.pending[n:]
        return n


def open_inflate(stream, wbits):
    if IS_MICROPYTHON:
        import deflate

        return deflate.DeflateIO(stream, deflate.ZLIB, wbits)
    return _ZlibReader(stream, wbits)
