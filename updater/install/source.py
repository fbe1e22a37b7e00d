# Where package bytes come from. A source pushes bytes from an offset into
# sink.write(memoryview) until the end, or until the sink raises Enough.
#   HttpSource: a TUF target through Updater.target_stream() (Range requests
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
    # A TUF target from its mirror: `target` is what Updater.target_stream()
    # returns (updater.tuf.fetcher.TargetStream: length cap, short-body
    # check, Range resume).
    def __init__(self, target):
        self.target = target

    @property
    def downloaded(self):
        return self.target.downloaded

    def stream(self, offset, sink):
        try:
            self.target.stream(offset, sink)
        except Enough:
            return
