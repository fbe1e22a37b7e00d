# Where package bytes come from. A source pushes bytes from an offset into
# sink.write(memoryview) until the end, or until the sink raises Enough.
#   HttpSource: the TUF target URL through updater.tuf.fetcher (Range requests
#     resume and skip; a server ignoring Range is handled by skipping bytes);
#   FileSource: a local file (tests, maintenance install from the console).


class Enough(Exception):
    # Raised by a sink when it has all it wants from this stream.
    pass


class FileSource:
    def __init__(self, path, buf_size=1024):
        self.path = path
        self.buf = bytearray(buf_size)
        self.downloaded = 0

    def stream(self, offset, sink):
        mv = memoryview(self.buf)
        with open(self.path, "rb") as f:
            f.seek(offset)
            try:
                while True:
                    n = f.readinto(self.buf)
                    if not n:
                        return
                    self.downloaded += n
                    sink.write(mv[:n])
            except Enough:
                return


class HttpSource:
    def __init__(self, fetcher, url, length):
        self.fetcher = fetcher
        self.url = url
        self.length = length
        self.downloaded = 0

    def stream(self, offset, sink):
        counter = _Counting(sink, self)
        try:
            self.fetcher.fetch(self.url, counter, self.length, offset)
        except Enough:
            return
        # The body ended before the TUF-signed length: the server (or a proxy)
        # sent a short file. That is a transport failure to retry, not a bad
        # package - the installer would otherwise refuse a good release.
        if offset + counter.n < self.length:
            from updater.tuf.errors import DownloadLengthMismatchError

            raise DownloadLengthMismatchError("%s ended at byte %d of %d" % (self.url, offset + counter.n, self.length))


class _Counting:
    def __init__(self, sink, src):
        self.sink = sink
        self.src = src
        self.n = 0

    def write(self, mv):
        self.src.downloaded += len(mv)
        self.n += len(mv)
        self.sink.write(mv)
