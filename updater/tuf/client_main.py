# Device-side command-line entry of the TUF client. Run on the VM as
#   micropython -m updater.tuf.client_main [options] COMMAND [ARG]
# (and identically with `python -m` on CPython). The host console script
# `medsentry-tuf-client` (host_tools/tuf_client_cli.py) launches it.
#
# Options (before the command):
#   --metadata-dir DIR        trusted metadata directory (required)
#   --metadata-url URL        repository metadata base URL
#   --target-name PATH        target path (repeatable, download only)
#   --target-base-url URL     targets base URL
#   --target-dir DIR          where downloaded targets are stored
#   --ca-file FILE            CA certificate (PEM/DER) for HTTPS
#   --connect-timeout S, --read-timeout S, --min-speed BYTES_PER_S,
#   --grace-ms MS             transport limits (see fetcher.py)
#   --envelope-type T         metadata (default, traditional TUF JSON) or
#                             simple (DSSE envelopes), as ngclient's
#                             UpdaterConfig.envelope_type; applies to init too
#   --max-root-length N, --max-timestamp-length N, --max-snapshot-length N,
#   --max-targets-length N    size caps in bytes (UpdaterConfig defaults
#                             otherwise); larger caps need a larger heap
#   --stats                   print "stats: ..." (time, peak heap) at the end
# Commands:
#   init TRUSTED_ROOT         take that root as trusted (no network)
#   refresh                   run the top-level update workflow
#   download                  refresh, then fetch each --target-name in order
#                             with one client, stopping at the first failure
# Exit status: 0 success, 1 any failure (never another value). Progress goes
# to stdout; the failure reason is the last line: "error: <Kind>: <message>".
import gc
import os
import sys

from board.compat import IS_MICROPYTHON, ticks_diff, ticks_ms
from updater.tuf.errors import DownloadError, RepositoryError


class UsageError(Exception):
    pass


_VALUED = (
    "--metadata-dir",
    "--metadata-url",
    "--target-name",
    "--target-base-url",
    "--target-dir",
    "--ca-file",
    "--connect-timeout",
    "--read-timeout",
    "--min-speed",
    "--grace-ms",
    "--envelope-type",
    "--max-root-length",
    "--max-timestamp-length",
    "--max-snapshot-length",
    "--max-targets-length",
)

# CLI option -> UpdaterConfig keyword
_CAPS = (
    ("--max-root-length", "root_max_length"),
    ("--max-timestamp-length", "timestamp_max_length"),
    ("--max-snapshot-length", "snapshot_max_length"),
    ("--max-targets-length", "targets_max_length"),
)


def parse_args(argv):
    opts = {"--target-name": []}
    pos = []
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == "--stats":
            opts[a] = True
            i += 1
        elif a in _VALUED:
            if i + 1 >= len(argv):
                raise UsageError("%s needs a value" % a)
            if a == "--target-name":
                opts[a].append(argv[i + 1])
            else:
                opts[a] = argv[i + 1]
            i += 2
        elif a.startswith("--"):
            raise UsageError("unknown option %s" % a)
        else:
            pos.append(a)
            i += 1
    if not pos:
        raise UsageError("missing command (init, refresh, download)")
    return opts, pos


def _need(opts, name):
    v = opts.get(name)
    if not v:
        raise UsageError("%s is required for this command" % name)
    return v


def _number(opts, name, default):
    v = opts.get(name)
    if v is None:
        return default
    try:
        return float(v) if "." in v else int(v)
    except ValueError:
        raise UsageError("%s must be a number" % name)


def _envelope(opts):
    from updater.tuf import envelope

    v = opts.get("--envelope-type") or envelope.ENVELOPE_METADATA
    if v not in envelope.ENVELOPE_TYPES:
        raise UsageError("--envelope-type must be one of %s" % ", ".join(envelope.ENVELOPE_TYPES))
    return v


def make_config(opts):
    """UpdaterConfig from the command-line options."""
    from updater.tuf.updater import UpdaterConfig

    kw = {"envelope_type": _envelope(opts)}
    for flag, name in _CAPS:
        if opts.get(flag) is not None:
            n = _number(opts, flag, None)
            if not isinstance(n, int) or n < 1:
                raise UsageError("%s must be a whole number of bytes >= 1" % flag)
            kw[name] = n
    return UpdaterConfig(**kw)


def _mkdirs(path):
    cur = ""
    for part in path.split("/"):
        if not part:
            if not cur:
                cur = "/"
            continue
        cur = cur + part if cur.endswith("/") else (cur + "/" + part if cur else part)
        try:
            os.mkdir(cur)
        except OSError:
            pass


def cmd_init(opts, root_file):
    from board.compat import write_atomic
    from updater.tuf.trusted_set import TrustedSet
    from updater.tuf.updater import current_time

    mdir = _need(opts, "--metadata-dir").rstrip("/")
    with open(root_file, "rb") as f:
        data = f.read()
        f.seek(0)
        # must be self-signed, well formed, in the chosen envelope
        ts = TrustedSet(f, current_time(), _envelope(opts))
    _mkdirs(mdir)
    write_atomic(mdir + "/root.json", data)
    print("init: trusted root v%d stored in %s" % (ts.root.version, mdir))


def _make_updater(opts):
    from updater.tuf.fetcher import Fetcher
    from updater.tuf.updater import Updater

    config = make_config(opts)
    f = Fetcher(
        connect_timeout=_number(opts, "--connect-timeout", 10),
        read_timeout=_number(opts, "--read-timeout", 10),
        min_bytes_per_s=_number(opts, "--min-speed", 1024),
        grace_ms=_number(opts, "--grace-ms", 4000),
        cafile=opts.get("--ca-file"),
    )
    tdir = opts.get("--target-dir")
    if tdir:
        _mkdirs(tdir)
    return Updater(
        _need(opts, "--metadata-dir"),
        _need(opts, "--metadata-url"),
        target_dir=tdir,
        target_base_url=opts.get("--target-base-url"),
        fetcher=f,
        config=config,
        log=print,
    )


def cmd_refresh(opts):
    u = _make_updater(opts)
    u.refresh()
    v = u.trusted_versions()
    print(
        "refresh: ok root v%d timestamp v%d snapshot v%d targets v%d"
        % (v["root"], v["timestamp"], v["snapshot"], v["targets"])
    )
    return u


def cmd_download(opts):
    names = opts["--target-name"]
    if not names:
        raise UsageError("download needs at least one --target-name")
    _need(opts, "--target-base-url")
    _need(opts, "--target-dir")
    u = cmd_refresh(opts)
    for name in names:
        info = u.get_targetinfo(name)
        if info is None:
            raise RepositoryError("target %s is not listed by any trusted role" % name)
        gc.collect()
        cached = u.find_cached_target(info)
        if cached is not None:
            print("download: %s already cached at %s" % (name, cached))
            continue
        path = u.download_target(info)
        print("download: %s ok (%d bytes) -> %s" % (name, info.length, path))


def _kind(e):
    if isinstance(e, RepositoryError):
        return "repository"
    if isinstance(e, DownloadError):
        return "download"
    if isinstance(e, UsageError):
        return "usage"
    if isinstance(e, MemoryError):
        return "memory"
    if isinstance(e, OSError):
        return "storage"
    return "internal"


def main(argv):
    t0 = ticks_ms()
    opts = {}
    try:
        opts, pos = parse_args(argv)
        cmd = pos[0]
        if cmd == "init":
            if len(pos) != 2:
                raise UsageError("usage: init TRUSTED_ROOT")
            cmd_init(opts, pos[1])
        elif cmd == "refresh":
            if len(pos) != 1:
                raise UsageError("refresh takes no argument")
            cmd_refresh(opts)
        elif cmd == "download":
            if len(pos) != 1:
                raise UsageError("download takes no argument")
            cmd_download(opts)
        else:
            raise UsageError("unknown command %r" % cmd)
        code = 0
    except KeyboardInterrupt:
        print("error: interrupted")
        code = 1
    except Exception as e:  # report every failure as a reason + exit 1
        print("error: %s: %s: %s" % (_kind(e), type(e).__name__, e))
        code = 1
    if opts.get("--stats"):
        gc.collect()
        used = -1
        if IS_MICROPYTHON:
            used = gc.mem_alloc()
        print("stats: time_ms=%d heap_in_use=%d" % (ticks_diff(ticks_ms(), t0), used))
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
