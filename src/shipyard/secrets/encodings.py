"""The spellings a secret value takes when something writes it into a log, for the Redactor to find.

Two families, because they are found differently:

* Escapes, character by character. JSON and Python repr (`\\n`, `\\u00e9`, `\\x07`, `\\"`), shell quoting
  (`shlex.quote` writes `'` as `'"'"'`, dash's `export -p` a run of them as `'"''"'`, bash's `set` as
  `'\\''`; bash's `export -p` / `declare -x` and `printf %q` put a backslash before `"`, `$`, `` ` ``,
  `\\` or a space, and write control characters as `$'\\001'`), URL and form encoding (`%XX` in either
  case, `+` for a space) and HTML entities all replace single characters and leave the rest alone, and
  each encoder escapes a different subset. So a form is a sequence of tokens, one per character of the
  value (one per run of single quotes), each listing every spelling of it; the Redactor turns it into
  one regex and so matches every mixture, whatever subset an encoder chose to escape. Letters and
  digits are spelled only as themselves: no encoder in use escapes them, and `\\n` is not an `n`.
* Base64 (standard and URL-safe alphabets) of the value's UTF-8 bytes. Embedded in a longer blob (an
  `Authorization: Basic` header is base64 of "user:password") the value starts at byte offset 0, 1 or 2
  of a 3-byte group and the characters at its edges mix in neighbouring bits; `base64_cores` gives, for
  each alignment, the characters that depend on the value alone. Line-wrapped base64 (PEM 64 columns,
  MIME 76) is matched by the Redactor joining wrapped runs before it looks for a core.
"""

from __future__ import annotations

import base64
import itertools
import string

Token = tuple[str, ...]        # the spellings of one character, longest first
Form = tuple[Token, ...]

MIN_CORE = 6                   # shorter base64 cores (secrets under 5 bytes) would mask random base64 text
_PUNCT = set(string.punctuation) | {" "}
_SHORT = {"\n": ("\\n",), "\t": ("\\t",), "\r": ("\\r",), "\b": ("\\b",), "\f": ("\\f",), "\v": ("\\v",),
          "\a": ("\\a",), "\0": ("\\0",), "\x1b": ("\\E", "\\e")}       # \E: bash's $'...' for ESC
_ENTITIES = {"&": ("&amp;",), "<": ("&lt;",), ">": ("&gt;",), '"': ("&quot;",),
             "'": ("&#39;", "&#x27;", "&apos;")}
_SHELL = {"'": ("'\"'\"'", "'\\''"), " ": ("+",)}   # shell single-quote splices; form-encoded space


def _hexes(prefix: str, code: int, width: int) -> set[str]:
    """`prefix` and `code` in hex, with lower- and upper-case digits (encoders differ)."""
    return {f"{prefix}{code:0{width}x}", f"{prefix}{code:0{width}X}"}


def _hex_spellings(ch: str) -> set[str]:
    """%XX / \\xXX / \\uXXXX / \\UXXXXXXXX / surrogate pairs / octal bytes, lower- and upper-case hex."""
    code, raw = ord(ch), ch.encode("utf-8", "surrogatepass")
    out = {"".join(f"%{b:02x}" for b in raw), "".join(f"%{b:02X}" for b in raw),
           "".join(f"\\x{b:02x}" for b in raw), "".join(f"\\x{b:02X}" for b in raw)}   # URL; bytes repr
    if code < 0x100:
        out |= _hexes("\\x", code, 2)                                               # str repr, C
    if code < 0x10000:
        out |= _hexes("\\u", code, 4)                                               # JSON, repr
    else:
        high, low = 0xD800 + ((code - 0x10000) >> 10), 0xDC00 + ((code - 0x10000) & 0x3FF)
        out |= _hexes("\\U", code, 8) | {f"\\u{high:04x}\\u{low:04x}", f"\\u{high:04X}\\u{low:04X}"}
    out.add("".join(f"\\{b:03o}" for b in raw))                                  # bash $'\001', printf %q
    return out


def spellings(ch: str) -> Token:
    """Every way an encoder in common use writes the character `ch`, longest first."""
    if ch.isascii() and ch.isalnum():
        return (ch,)
    out = {ch} | _hex_spellings(ch)
    if ch in _PUNCT:
        out.add("\\" + ch)                     # JSON \" \\ \/, repr \' , shell \$ \` and printf %q
    out.update(_SHORT.get(ch, ()))
    out.update(_ENTITIES.get(ch, ()))
    out.update(_SHELL.get(ch, ()))
    return tuple(sorted(out, key=lambda s: (-len(s), s)))


def _quote_run(n: int) -> Token:
    """A run of n single quotes: each spelled alone, or (dash's `export -p`) one double-quoted run."""
    one = spellings("'")
    quotes = "'" * n
    joined = {alt * n for alt in one} | {f'{close}"{quotes}"{reopen}' for close in ("", "'") for reopen in ("", "'")}
    return tuple(sorted(joined, key=lambda s: (-len(s), s)))


def escape_form(value: str) -> Form:
    """The escape-family form of `value` (its plain spelling is one of the strings it matches)."""
    form: list[Token] = []
    for ch, group in itertools.groupby(value):
        n = len(list(group))
        form += [_quote_run(n)] if ch == "'" and n > 1 else [spellings(ch)] * n
    return tuple(form)


def base64_cores(value: str) -> set[str]:
    """For each alignment (0, 1, 2 bytes before the value) and both alphabets: the base64 characters
    whose 6 bits all come from the value, whatever bytes surround it. Cores under MIN_CORE are left out."""
    raw = value.encode("utf-8", "surrogatepass")
    cores: set[str] = set()
    for k in range(3):
        first = -(-8 * k // 6)                   # first character with no bit from the k bytes before
        last = (8 * (k + len(raw))) // 6         # characters from `last` on take bits of what follows
        padded = b"\0" * k + raw + b"\0\0"       # no "=" padding inside the slice
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            core = encode(padded).decode()[first:last]
            if len(core) >= MIN_CORE:
                cores.add(core)
    return cores
