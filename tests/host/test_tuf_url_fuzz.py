"""Hypothesis fuzzing (on CPython) of the fetcher's URL handling and of the
target URL the Updater builds: any input gives a DownloadError or a URL
whose request line cannot be split, and target paths round-trip through
percent-encoding exactly as urllib.parse.quote/unquote do."""
from __future__ import annotations

from urllib.parse import quote as py_quote
from urllib.parse import unquote

from hypothesis import given, settings
from hypothesis import strategies as st

from updater.tuf.errors import DownloadError
from updater.tuf.fetcher import _content_range
from updater.tuf.patterns import quote
from updater.tuf.urls import parse_url, resolve_location

_url_chars = st.sampled_from(list("htps:/[]@?#%.:-0123456789abcAZ \r\n\t\x00\x7f\u00e9"))


@settings(max_examples=600, deadline=1000)
@given(st.text(_url_chars, max_size=40))
def test_parse_url_never_crashes_and_never_lets_whitespace_through(tail):
    for url in ("http://" + tail, "https://h" + tail, tail):
        try:
            scheme, host, port, path = parse_url(url)
        except DownloadError:
            continue
        assert scheme in ("http", "https") and 0 < port < 65536 and host
        assert path.startswith("/") and "#" not in path
        for c in host + path:
            assert 32 < ord(c) < 127, url


@settings(max_examples=400, deadline=1000)
@given(st.text(_url_chars, max_size=30))
def test_resolve_location_gives_a_url_or_download_error(loc):
    try:
        url = resolve_location("http://h:8080/a/b?q=/x", loc)
        parse_url(url)
    except DownloadError:
        pass


@settings(max_examples=400, deadline=1000)
@given(st.text(max_size=30))
def test_target_path_quoting_matches_urllib(path):
    assert quote(path, b"/") == py_quote(path, safe="/")
    assert quote(path) == py_quote(path, safe="")
    assert unquote(quote(path, b"/")) == path


@settings(max_examples=300, deadline=1000)
@given(st.text(st.sampled_from(list("bytes 0123456789-/*x")), max_size=24))
def test_content_range_parser_is_total(v):
    r = _content_range(v)
    assert r is None or (r[0] <= r[1] and (r[2] is None or isinstance(r[2], int)))
