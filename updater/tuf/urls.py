# URLs for the device's HTTP client: parsing (refusing what could split a
# request line) and redirect targets. Pure string work, common subset of
# MicroPython and CPython. fetcher.py uses it and stays loaded between checks,
# so this module does too: what only a check needs (percent-encoding of role
# and target names, a base URL's trailing slash) is in patterns.py, which is
# unloaded after each check.
from updater.tuf.errors import DownloadError


def parse_url(url):
    """'http(s)://host[:port]/path?q#f' -> (scheme, host, port, path?q).

    The URL goes into the request line and the Host header verbatim, so a
    control character, space or non-ASCII character in it (a redirect
    Location, a badly built URL) is refused rather than sent: it could
    split the request line or inject headers. The fragment is dropped."""
    for c in url:
        o = ord(c)
        if o <= 32 or o >= 127:
            raise DownloadError("URL holds a control, space or non-ASCII character: %r" % url)
    i = url.find("://")
    if i < 0:
        raise DownloadError("not an absolute URL: %s" % url)
    scheme = url[:i].lower()
    if scheme not in ("http", "https"):
        raise DownloadError("unsupported URL scheme: %s" % scheme)
    rest = url[i + 3:]
    k = rest.find("#")
    if k >= 0:
        rest = rest[:k]
    j = rest.find("/")
    q = rest.find("?")
    if q >= 0 and (j < 0 or q < j):  # "http://h?x": query without a path
        hostport, path = rest[:q], "/" + rest[q:]
    elif j < 0:
        hostport, path = rest, "/"
    else:
        hostport, path = rest[:j], rest[j:]
    if "@" in hostport:
        raise DownloadError("credentials in URL are not supported")
    port = 443 if scheme == "https" else 80
    if hostport.startswith("["):  # IPv6 literal
        k = hostport.find("]")
        if k < 0:
            raise DownloadError("bad host in URL: %s" % url)
        host = hostport[1:k]
        tail = hostport[k + 1:]
        if tail.startswith(":"):
            port = _port(tail[1:], url)
    else:
        k = hostport.rfind(":")
        if k >= 0:
            host = hostport[:k]
            port = _port(hostport[k + 1:], url)
        else:
            host = hostport
    if not host:
        raise DownloadError("no host in URL: %s" % url)
    return scheme, host, port, path


def _port(s, url):
    if not s.isdigit() or not 0 < int(s) < 65536:
        raise DownloadError("bad port in URL: %s" % url)
    return int(s)


def resolve_location(base, loc):
    """Absolute URL of a redirect target: absolute ("scheme://..."),
    network-path ("//host/path": same scheme, another host), absolute-path
    ("/path") or relative to the directory of the base path (its query
    left out). Dot segments are left to the server."""
    i = loc.find("://")
    if i > 0 and "/" not in loc[:i] and "?" not in loc[:i]:
        return loc
    scheme, host, port, path = parse_url(base)
    if loc.startswith("//"):
        return scheme + ":" + loc
    if ":" in host:
        host = "[" + host + "]"
    if loc.startswith("/"):
        return "%s://%s:%d%s" % (scheme, host, port, loc)
    q = path.find("?")
    if q >= 0:
        path = path[:q]
    d = path[: path.rfind("/") + 1]
    return "%s://%s:%d%s%s" % (scheme, host, port, d, loc)
