"""Property tests: random secrets pushed through every encoding a log may hold, then redacted; decoding
what is left must not give the secret back (hypothesis finds the odd characters a hand-picked list misses).

Shell quoting is checked against the real shells: bash's `export -p`, `declare -p`, `set` and `printf %q`,
and dash's (/bin/sh on Debian) `export -p`.
"""

from __future__ import annotations

import ast
import base64
import html
import json
import re
import shlex
import shutil
import subprocess
import textwrap
from collections.abc import Callable
from urllib.parse import parse_qs, quote, quote_plus, unquote, unquote_plus, urlencode

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from shipyard.agent.logpipe import LinePump
from shipyard.secrets.encodings import base64_cores
from shipyard.secrets.redact import MASK, Redactor

# Any character but NUL (no environment can hold it), lone surrogates (not text) and "*" (MASK is
# made of it, so "e ***" could be "found" in the masked "before *** after").
SECRETS = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00*"), min_size=5, max_size=32)
TOKENS = st.text(st.characters(codec="ascii", exclude_characters="\x00*"), min_size=5, max_size=32)
B64_RUN = re.compile(r"[A-Za-z0-9+/_-]+")


def _loose(decode: Callable[[str], str]) -> Callable[[str], str]:
    """Decode what redaction left; where the mask broke the syntax, look at the raw text instead."""
    def run(text: str) -> str:
        try:
            return decode(text)
        except (ValueError, SyntaxError, KeyError, IndexError, UnicodeDecodeError):
            return text
    return run


TEXT_ENCODINGS: dict[str, tuple[Callable[[str], str], Callable[[str], str]]] = {
    "plain": (lambda s: f"password={s};", lambda t: t),
    "json": (lambda s: json.dumps({"password": s, "user": "app"}), lambda t: json.loads(t)["password"]),
    "json-utf8": (lambda s: json.dumps({"password": s}, ensure_ascii=False), lambda t: json.loads(t)["password"]),
    "json-slashes": (lambda s: json.dumps(s).replace("/", "\\/"), json.loads),
    "repr": (lambda s: repr({"password": s}), lambda t: ast.literal_eval(t)["password"]),
    "repr-bytes": (lambda s: repr(s.encode()), lambda t: ast.literal_eval(t).decode("utf-8", "replace")),
    "shlex": (lambda s: "exec app --password " + shlex.quote(s), lambda t: " ".join(shlex.split(t))),
    "form": (lambda s: urlencode({"user": "app", "password": s}), lambda t: parse_qs(t)["password"][0]),
    "quote_plus": (lambda s: "q=" + quote_plus(s), unquote_plus),
    "url": (lambda s: "postgres://app:" + quote(s, safe="") + "@db/app", unquote),
    "url-path": (lambda s: "/a/" + quote(s) + "/b", unquote),
    "url-lower": (lambda s: re.sub("%[0-9A-F]{2}", lambda m: m.group().lower(), quote(s, safe="")), unquote),
    "html": (lambda s: f"<td>{html.escape(s)}</td>", html.unescape),
}


@pytest.mark.parametrize("name", sorted(TEXT_ENCODINGS))
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=SECRETS)
def test_no_text_encoding_survives(name: str, secret: str) -> None:
    encode, decode = TEXT_ENCODINGS[name]
    text = encode(secret)
    out = Redactor([secret]).redact(text)
    assert MASK in out
    assert secret not in _loose(decode)(out), (name, text, out)


def b64_decodings(text: str) -> list[bytes]:
    """Every decoding of every base64 run in `text` (line breaks removed), at each of 4 alignments."""
    out = []
    for run in B64_RUN.findall(re.sub(r"\\r|\\n|\s", "", text)):
        for k in range(4):
            piece = run[k:][: (len(run) - k) // 4 * 4]
            out.append(base64.b64decode(piece.replace("-", "+").replace("_", "/")))
    return out


def _pem(data: bytes) -> str:
    return "\n".join(textwrap.wrap(base64.b64encode(data).decode(), 64))


B64_ENCODINGS: dict[str, Callable[[bytes], str]] = {
    "std": lambda b: "Authorization: Basic " + base64.b64encode(b).decode(),
    "urlsafe": lambda b: "token=" + base64.urlsafe_b64encode(b).decode().rstrip("="),
    "mime-76": lambda b: base64.encodebytes(b).decode(),
    "mime-crlf": lambda b: base64.encodebytes(b).decode().replace("\n", "\r\n"),
    "pem-64": lambda b: f"-----BEGIN DATA-----\n{_pem(b)}\n-----END DATA-----\n",
    "pem-indented": lambda b: "key: |\n" + textwrap.indent(_pem(b), "  "),
    "pem-in-json": lambda b: json.dumps({"pem": _pem(b)}),
}


@pytest.mark.parametrize("name", sorted(B64_ENCODINGS))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=SECRETS, before=st.binary(max_size=120), after=st.binary(max_size=120))
def test_no_base64_at_any_offset_survives(name: str, secret: str, before: bytes, after: bytes) -> None:
    raw = secret.encode()
    text = B64_ENCODINGS[name](before + raw + after)
    out = Redactor([secret]).redact(text)
    assert MASK in out
    assert not any(raw in decoded for decoded in b64_decodings(out)), (name, text, out)


@settings(max_examples=60, deadline=None)
@given(secret=SECRETS, before=st.binary(min_size=40, max_size=200), data=st.data())
def test_a_wrapped_secret_split_across_reads_is_still_masked(secret: str, before: bytes, data: st.DataObject) -> None:
    """The log process reads whatever the pipe holds: a wrapped blob may arrive in two reads."""
    raw = secret.encode()
    stream = (base64.encodebytes(before + raw + b"tail of the blob") + b"done\n")
    cut = data.draw(st.integers(1, len(stream) - 1), label="cut")
    pump = LinePump(Redactor([secret]))
    out = pump.feed(stream[:cut]) + pump.partial() + pump.feed(stream[cut:]) + pump.finish()
    assert out.endswith(b"done\n")
    assert not any(raw in decoded for decoded in b64_decodings(out.decode())), (stream, out)


def _shell(shell: str, script: str, value: str) -> str:
    exe = shutil.which(shell)
    if exe is None:
        pytest.skip(f"{shell} is not installed")
    res = subprocess.run([exe, "-c", script], env={"V": value, "PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
                         capture_output=True, timeout=10, check=True)
    return res.stdout.decode("utf-8", "surrogateescape")


SHELL_FORMS = {
    "bash export -p": ("bash", "export -p | grep -A50 '^declare -x V='"),
    "bash declare -p": ("bash", "declare -p V"),
    "bash set": ("bash", "set -o posix; set | grep -A50 '^V='"),
    "bash printf %q": ("bash", 'printf "%q\\n" "$V"'),
    "dash export -p": ("dash", "export -p | grep -A50 '^export V='"),
}


def _ansi_c(text: str) -> str:
    """bash's $'...' strings decoded (octal, hex and the short escapes)."""
    def one(m: re.Match[str]) -> str:
        return ast.literal_eval("'" + m.group(1).replace("'", "\\'") + "'") if m else ""
    return re.sub(r"\$'((?:[^'\\]|\\.)*)'", lambda m: _loose(one)(m), text)  # type: ignore[arg-type]


def shell_decodings(text: str) -> list[str]:
    """What a reader could make of shell-quoted text, without ever running it."""
    return [text, _loose(lambda t: " ".join(shlex.split(t)))(text),
            re.sub(r"\\(.)", r"\1", text, flags=re.S), _ansi_c(text)]


@pytest.mark.parametrize("name", sorted(SHELL_FORMS))
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(secret=SECRETS)
def test_no_real_shell_quoting_survives(name: str, secret: str) -> None:
    assume("\n" not in secret and "\r" not in secret)        # one line per variable, for the grep
    shell, script = SHELL_FORMS[name]
    printed = _shell(shell, script, secret).split("\n", 1)[0]
    out = Redactor([secret]).redact(printed)
    assert MASK in out, (name, printed)
    assert not any(secret in decoded for decoded in shell_decodings(out)), (name, printed, out)


@settings(max_examples=100, deadline=None)
@given(secret=TOKENS, other=st.text(st.characters(codec="ascii"), max_size=40))
def test_pending_holds_back_exactly_a_possible_start(secret: str, other: str) -> None:
    """Whatever encoding a secret is in, a stream cut inside it keeps the start back; text sharing no
    character with the secret or its base64 is never held."""
    r = Redactor([secret])
    quoted = shlex.quote(secret)
    for encoded in (json.dumps(secret)[1:-1], quote(secret, safe=""), quoted[1:-1] if quoted != secret else quoted):
        for cut in range(1, len(encoded)):
            head = "log line: " + encoded[:cut]
            kept = r.pending(head)
            assert kept >= 1, (encoded, cut)
            assert MASK in r.redact(head[len(head) - kept:] + encoded[cut:])
    used = set(secret) | set("".join(base64_cores(secret))) | set("\\%&'+")
    plain = "".join(c for c in other if c not in used)
    assert r.pending(plain) == 0, plain
