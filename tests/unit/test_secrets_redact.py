"""The Redactor and the log process's line pump: every form of a secret is masked, nothing else is."""

from __future__ import annotations

import base64
import json
from urllib.parse import quote

from shipyard.agent.logpipe import MAX_LINE, LinePump
from shipyard.secrets.generate import jwt_rsa
from shipyard.secrets.redact import MASK, Redactor


def test_exact_occurrences_longest_first() -> None:
    r = Redactor(["s3cret", "s3cret-and-more"])
    assert r.redact("a s3cret-and-more b s3cret c") == f"a {MASK} b {MASK} c"
    assert r.redact("nothing here") == "nothing here"


def test_short_and_empty_values_are_ignored() -> None:
    r = Redactor(["", "1", "abc"])
    assert not r and r.redact("port 1 abc") == "port 1 abc"


def test_common_encodings_are_masked() -> None:
    value = "p@ss w/rd+x\"q"
    r = Redactor([value])
    for form in (value, json.dumps(value)[1:-1], quote(value, safe=""), base64.b64encode(value.encode()).decode()):
        assert MASK in r.redact(f"<{form}>") and form not in r.redact(f"<{form}>")


def test_pem_in_json_and_line_by_line() -> None:
    private, _ = jwt_rsa(1024)
    r = Redactor([private])
    dumped = json.dumps({"key": private})
    assert "PRIVATE KEY-----" not in r.redact(dumped).replace("-----BEGIN PRIVATE KEY-----", "")
    body = private.splitlines()[1:-1]
    masked = r.redact(" ".join(private.split()))          # `echo $KEY` joins the lines with spaces
    assert not any(line in masked for line in body)
    assert "BEGIN PRIVATE KEY" in masked                  # the armor is no secret and stays readable


def test_redact_data_keeps_shape() -> None:
    r = Redactor(["topsecret"])
    data = {"a": ["x topsecret", 3, {"topsecret": ("topsecret",)}], "n": None}
    assert r.redact_data(data) == {"a": [f"x {MASK}", 3, {MASK: (MASK,)}], "n": None}


def test_bytes_round_trip_undecodable() -> None:
    r = Redactor(["topsecret"])
    assert r.redact_bytes(b"\xff topsecret \xfe") == b"\xff *** \xfe"


def test_pending_is_the_longest_possible_start() -> None:
    r = Redactor(["abcdef"])
    assert r.pending("xx abc") == 3 and r.pending("xx") == 0 and r.pending("abcdef") == 0


def test_line_pump_masks_a_secret_split_across_writes() -> None:
    pump = LinePump(Redactor(["supersecret"]))
    out = pump.feed(b"one supe") + pump.partial() + pump.feed(b"rsecret two\nthree ") + pump.finish()
    assert out == b"one *** two\nthree "


def test_line_pump_partial_flush_holds_back_only_a_possible_start() -> None:
    pump = LinePump(Redactor(["supersecret"]))
    pump.feed(b"progress 50% su")
    assert pump.partial() == b"progress 50% " and pump.buf == b"su"
    pump.feed(b"mmary\n")
    assert pump.finish() == b""


def test_line_pump_overlong_line_is_written_in_pieces() -> None:
    pump = LinePump(Redactor(["supersecret"]))
    out = pump.feed(b"x" * (MAX_LINE + 10) + b"supersecret")
    assert out.startswith(b"x" * MAX_LINE) and b"supersecret" not in out + pump.finish()


def test_ready_holds_back_only_lines_that_may_begin_a_wrapped_secret() -> None:
    import base64 as b64

    secret = "wrapped-secret-value-0123456789"
    blob = b64.encodebytes(b"\0" * 50 + secret.encode() + b"\0" * 50)
    first_line = blob[:blob.index(b"\n") + 1]            # 76 characters, the secret's base64 begins in it
    r = Redactor([secret])
    cut = r.ready(first_line)                             # the end that may begin the secret's base64 waits
    assert first_line[cut:] == b"3cmFwcGVk\n"               # from the first character that is all secret
    prose = b"deployed revision 0123456789abcdef0123456789abcdef01234567\nsecond line\n"
    assert r.ready(prose) == len(prose)                   # a line ending in a hash is not held
    assert r.ready(b"partial") == 0 and r.ready(b"a\nb") == 2
    pump = LinePump(r)
    out = pump.feed(first_line) + pump.feed(blob[len(first_line):]) + pump.finish()
    assert MASK.encode() in out and out.count(b"\n") < blob.count(b"\n")   # the core's lines became one mask
    assert first_line not in out
