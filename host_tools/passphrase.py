"""Passphrase policy for offline keys (release keys, fleet CA key).

A new passphrase needs at least :data:`MIN_LENGTH` characters and an estimated
strength of :data:`MIN_BITS` bits. The estimate is a small pure-Python model in
the spirit of zxcvbn: each character is worth log2 of the alphabet the
passphrase draws from, except characters that continue a pattern (a repeat,
an ascending/descending run such as ``abc`` or ``4321``, a keyboard-row run
such as ``qwerty``), which are worth 1 bit, a common password or word, which is
worth 10 bits as a whole, and a passphrase that is one unit repeated, which is
worth its unit. It has no dictionary of millions of words, so it under-rates no
strong passphrase but may over-rate a weak one built from rare words; it exists
to refuse the obvious (``12345678``, ``password123``, ``aaaaaaaaaaaa``) without
a new dependency. Diceware-style passphrases (four or more random words) pass
easily.
"""
from __future__ import annotations

import math

MIN_LENGTH = 12
MIN_BITS = 50.0
_ROWS = ("`1234567890-=", "qwertyuiop[]\\", "asdfghjkl;'", "zxcvbnm,./")
_COMMON = (
    "password", "passw0rd", "p@ssword", "qwerty", "azerty", "letmein", "welcome", "admin",
    "administrator", "iloveyou", "monkey", "dragon", "master", "secret", "changeme", "default",
    "medsentry", "infusion", "hospital", "login", "abc123", "football", "baseball", "sunshine",
    "princess", "trustno1", "whatever", "shadow", "superman", "michael", "starwars", "hello",
)


def _pool(text: str) -> int:
    pool = 0
    if any(c.islower() and c.isascii() for c in text):
        pool += 26
    if any(c.isupper() and c.isascii() for c in text):
        pool += 26
    if any(c.isdigit() and c.isascii() for c in text):
        pool += 10
    if any(c.isascii() and not c.isalnum() for c in text):
        pool += 33
    if any(not c.isascii() for c in text):
        pool += 100
    return max(pool, 1)


def _continues(prev: str, cur: str) -> bool:
    a, b = prev.lower(), cur.lower()
    if a == b or abs(ord(a) - ord(b)) == 1:
        return True
    for row in _ROWS:
        i, j = row.find(a), row.find(b)
        if i >= 0 and j >= 0 and abs(i - j) == 1:
            return True
    return False


def _unit(text: str) -> str:
    """The shortest unit whose repetition is `text`."""
    n = len(text)
    for size in range(1, n // 2 + 1):
        if n % size == 0 and text[:size] * (n // size) == text:
            return text[:size]
    return text


def estimate_bits(passphrase: str) -> float:
    """Estimated guessing entropy in bits (see the module docstring)."""
    unit = _unit(passphrase)
    extra = math.log2(len(passphrase) // len(unit)) if unit != passphrase else 0.0
    per_char = math.log2(_pool(unit))
    low = unit.lower()
    worth = [per_char] * len(unit)
    for i in range(1, len(unit)):
        if _continues(unit[i - 1], unit[i]):
            worth[i] = 1.0
    for word in _COMMON:
        start = low.find(word)
        while start >= 0:
            worth[start] = 10.0
            for k in range(start + 1, start + len(word)):
                worth[k] = 0.0
            start = low.find(word, start + len(word))
    return sum(worth) + extra


def weakness(passphrase: str) -> str | None:
    """Why `passphrase` is refused for a new key, or None if it is acceptable."""
    if len(passphrase) < MIN_LENGTH:
        return f"too short: at least {MIN_LENGTH} characters"
    bits = estimate_bits(passphrase)
    if bits < MIN_BITS:
        return (f"too easy to guess (about {bits:.0f} bits, at least {MIN_BITS:.0f} needed): "
                "avoid common words, repeats and runs like 1234 or qwerty; "
                "four or more random words work well")
    return None
