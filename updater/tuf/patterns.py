# TUF target paths: delegation path patterns (shell-style 'paths' matched
# segment by segment as python-tuf does), the path hash of
# 'path_hash_prefixes', the prefix test of Updater.list_targets
# (may_match_prefix), and the percent-encoding of role and target names in
# URLs and file names (quote, slash): what only a check needs, unloaded after it.
import binascii
import hashlib


def _split_range(s):
    # Bracket expression body (after '!') -> list of (lo, hi) char ranges.
    # "a-c" is a range, a '-' first or last is literal. lo > hi matches
    # nothing (python's fnmatch drops such ranges too).
    items = []
    i = 0
    n = len(s)
    while i < n:
        c = s[i]
        if i + 2 < n and s[i + 1] == "-":
            items.append((c, s[i + 2]))
            i += 3
        else:
            items.append((c, c))
            i += 1
    return items


def _compile_glob(pat):
    # Shell-style pattern -> tokens: "*" (any run), "?" (one char), a str of
    # length 1 (that char), or (negate, ranges) for [...] / [!...].
    # Same rules as CPython's fnmatch.translate for '*', '?', '[...]',
    # '[!...]', ']' first in a set, unclosed '[' taken literally.
    toks = []
    i = 0
    n = len(pat)
    while i < n:
        c = pat[i]
        i += 1
        if c == "*":
            if not toks or toks[-1] != "*":
                toks.append("*")
        elif c == "?":
            toks.append("?")
        elif c == "[":
            j = i
            if j < n and pat[j] == "!":
                j += 1
            if j < n and pat[j] == "]":
                j += 1
            while j < n and pat[j] != "]":
                j += 1
            if j >= n:
                toks.append("[")
            else:
                body = pat[i:j]
                i = j + 1
                neg = body.startswith("!")
                if neg:
                    body = body[1:]
                toks.append((neg, _split_range(body)))
        else:
            toks.append(c)
    return toks


def _tok_match(tok, ch):
    if tok == "?":
        return True
    if isinstance(tok, str):
        return tok == ch
    neg, ranges = tok
    hit = False
    for lo, hi in ranges:
        if lo <= ch <= hi:
            hit = True
            break
    return hit != neg


def fnmatchcase(name, pat):
    """fnmatch.fnmatchcase for the TUF 'paths' patterns: '*' matches any run
    (including '/', but callers match segment by segment), '?' one char,
    [seq] / [!seq] a set. Iterative, O(len(name)*len(pat)) worst case."""
    toks = _compile_glob(pat)
    nt = len(toks)
    ns = len(name)
    ti = si = 0
    star_t = -1
    star_s = 0
    while si < ns:
        if ti < nt and toks[ti] == "*":
            star_t = ti
            star_s = si
            ti += 1
        elif ti < nt and _tok_match(toks[ti], name[si]):
            ti += 1
            si += 1
        elif star_t >= 0:
            ti = star_t + 1
            star_s += 1
            si = star_s
        else:
            return False
    while ti < nt and toks[ti] == "*":
        ti += 1
    return ti == nt


def path_matches(target_path, pattern):
    """TUF 'paths' matching as python-tuf does it: same number of '/'
    segments, each segment matched with fnmatch semantics."""
    tp = target_path.split("/")
    pp = pattern.split("/")
    if len(tp) != len(pp):
        return False
    for i in range(len(tp)):
        if not fnmatchcase(tp[i], pp[i]):
            return False
    return True


def path_hash(target_path):
    return binascii.hexlify(hashlib.sha256(target_path.encode()).digest()).decode()


def may_match_prefix(patterns, prefix):
    # Could a path starting with `prefix` match one of these glob patterns?
    # Compare the literal head of each pattern (up to its first wildcard)
    # with the prefix: an over-approximation, never a wrong exclusion.
    for p in patterns:
        k = len(p)
        for w in "*?[":
            i = p.find(w)
            if 0 <= i < k:
                k = i
        head = p[:k]
        n = min(len(head), len(prefix))
        if head[:n] == prefix[:n]:
            return True
    return False


_SAFE = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~"


def quote(s, safe=b""):
    """urllib.parse.quote(s, safe=safe) for the common subset (UTF-8,
    upper-case %XX; `safe` is bytes)."""
    out = []
    for b in s.encode():
        if b in _SAFE or b in safe:
            out.append(chr(b))
        else:
            out.append("%%%02X" % b)
    return "".join(out)


def slash(url):
    return url if url.endswith("/") else url + "/"
