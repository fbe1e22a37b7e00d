# Device tests (both runtimes) from the adversarial review of updater/tuf/:
# URL building and parsing (a target path is data from signed, possibly
# delegated, metadata and must never reach the HTTP request line raw),
# redirect resolution, and expiry parsing as strict as python-tuf.
import devtest
from updater.tuf import metadata as md
from updater.tuf.errors import DownloadError, FormatError
from updater.tuf.fetcher import parse_url, resolve_location
from updater.tuf.updater import Updater


def _updater():
    d = devtest.tmpdir()
    with open(devtest.data_path("tuf/root1.json"), "rb") as f:
        data = f.read()
    with open(d + "/root.json", "wb") as f:
        f.write(data)
    # root1 has consistent_snapshot true: target names get the hash prefix
    return Updater(d, "http://127.0.0.1:9/metadata", target_base_url="http://127.0.0.1:9/targets", now=0)


def _info(path):
    return md.TargetFile(path, {"length": 1, "hashes": {"sha256": "ab" * 32}})


def test_target_url_percent_encodes_the_target_path():
    u = _updater()
    h = "ab" * 32
    # '/' keeps separating directories; unreserved characters stay as they are
    assert u.target_url(_info("fw/app-1.0_x~.bin")) == "http://127.0.0.1:9/targets/fw/%s.app-1.0_x~.bin" % h
    # CR/LF (header injection), space (breaks the request line), '?' and '#'
    # (would become query/fragment), '%' (would be decoded by the server)
    # and non-ASCII are all percent-encoded (UTF-8), like urllib.parse.quote
    assert u.target_url(_info("fw/x\r\nX-Evil: 1")) == (
        "http://127.0.0.1:9/targets/fw/%s.x%%0D%%0AX-Evil%%3A%%201" % h)
    assert u.target_url(_info("fw dir/a b?c#d%20.bin")) == (
        "http://127.0.0.1:9/targets/fw%%20dir/%s.a%%20b%%3Fc%%23d%%2520.bin" % h)
    assert u.target_url(_info("fw/\u00e9.bin")) == "http://127.0.0.1:9/targets/fw/%s.%%C3%%A9.bin" % h
    # without the hash prefix (python-tuf's prefix_targets_with_hash=False)
    u.config.prefix_targets_with_hash = False
    assert u.target_url(_info("a b/c")) == "http://127.0.0.1:9/targets/a%20b/c"


def test_urls_with_control_characters_or_spaces_are_refused():
    # Nothing that could split the request line or inject a header is ever
    # sent: such a URL (e.g. from a redirect) is a transport failure.
    for url in ("http://h/a\r\nX-Evil: 1", "http://h/a b", "http://h/a\tb", "http://h/a\x00",
                "http://h/a\x7f", "http://h/\u00e9", "http://h\r\n/a"):
        devtest.raises(DownloadError, parse_url, url)
    # ordinary URLs still parse; a fragment is never sent to the server
    assert parse_url("http://h:81/a%20b?x=1") == ("http", "h", 81, "/a%20b?x=1")
    assert parse_url("http://h/a#frag") == ("http", "h", 80, "/a")


def test_redirect_resolution():
    # a network-path reference ("//host/path") names another host
    assert resolve_location("http://h:1/a/b", "//o:2/x") == "http://o:2/x"
    assert resolve_location("https://h/a/b", "//o/x") == "https://o/x"
    # a relative reference resolves against the path, not the query
    assert resolve_location("http://h:1/a/b?q=/z/y", "c") == "http://h:1/a/c"
    assert resolve_location("http://h:1/a/b?q=1", "/c") == "http://h:1/c"


def test_expires_seconds_must_be_below_60():
    # python-tuf (datetime.strptime) refuses second 60/61; so do we
    assert md.parse_expires("2030-01-01T00:00:59Z") == 1893456059
    devtest.raises(FormatError, md.parse_expires, "2030-01-01T00:00:60Z")
    devtest.raises(FormatError, md.parse_expires, "2030-01-01T00:00:61Z")
