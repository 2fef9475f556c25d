"""Redaction throughput on a large log, measured.

A synthetic app log of `--mb` megabytes (request lines, JSON, quoted values, URLs) is redacted with a
Redactor holding `--values` secrets: Django-style keys and tokens plus one RS256 private key (PEM). Runs
at three secret densities: none in the log, one line in 10,000, one line in 100 (each hit in a random
encoding: plain, JSON, URL, shell-quoted, base64 at some offset, wrapped base64). Also timed: building
the Redactor, and the log process's line pump fed the log in 4 KiB reads.

    python bench/redact.py [--mb 4] [--values 10] [--json]
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shlex
import sys
import time
from collections.abc import Callable
from urllib.parse import quote

from shipyard.agent.logpipe import LinePump
from shipyard.secrets.generate import django_key, jwt_rsa, token
from shipyard.secrets.redact import MASK, Redactor

WORDS = ["GET", "/api/v1/users", "200", "12ms", "user_id=42", "INFO", "request", "done", '{"a": 1}', "db",
         "query", "SELECT", "*", "FROM", "t", "WHERE", "x=%s", "'quoted'", "https://example.com/a?b=c&d=e",
         "0123456789abcdef0123456789abcdef01234567", "Traceback", "\\n", "$HOME"]
ENCODINGS: list[Callable[[str], str]] = [
    lambda s: s, lambda s: json.dumps({"k": s}), lambda s: quote(s, safe=""), shlex.quote,
    lambda s: base64.b64encode(os.urandom(random.randint(0, 2)) + s.encode()).decode(),
    lambda s: base64.encodebytes(os.urandom(60) + s.encode() + os.urandom(60)).decode(),
]


def make_log(size: int, secrets: list[str], rate: float, rng: random.Random) -> tuple[str, int]:
    lines, total, hits = [], 0, 0
    while total < size:
        line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 16)))
        if rate and rng.random() < rate:
            line += " secret=" + rng.choice(ENCODINGS)(rng.choice(secrets))
            hits += 1
        lines.append(line)
        total += len(line) + 1
    return "\n".join(lines) + "\n", hits


def timed(fn: Callable[[], object]) -> tuple[float, object]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--mb", type=float, default=4.0, help="log size in MB")
    ap.add_argument("--values", type=int, default=10, help="secret values besides the PEM key")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    rng = random.Random(8)
    secrets = [django_key() if i % 2 else token(32) for i in range(args.values)]
    pem = jwt_rsa(2048)[0]
    build, redactor = timed(lambda: Redactor([*secrets, pem]))
    assert isinstance(redactor, Redactor)
    redactor.redact("warm up the regex")
    result: dict[str, object] = {"mb": args.mb, "values": args.values + 1, "build_seconds": round(build, 3)}
    for label, rate in (("none", 0.0), ("1_in_10000", 1e-4), ("1_in_100", 1e-2)):
        text, hits = make_log(int(args.mb * 1e6), secrets, rate, rng)
        seconds, out = timed(lambda: redactor.redact(text))  # noqa: B023 - called at once
        assert isinstance(out, str) and out.count(MASK) >= hits and not any(s in out for s in secrets)
        result[label] = {"hits": hits, "seconds": round(seconds, 3), "mb_per_s": round(len(text) / 1e6 / seconds, 1)}
    data = text.encode()

    def pumped() -> bytes:
        pump = LinePump(redactor)
        return b"".join(pump.feed(data[i:i + 4096]) for i in range(0, len(data), 4096)) + pump.finish()

    seconds, _ = timed(pumped)
    result["line_pump_1_in_100"] = {"seconds": round(seconds, 3), "mb_per_s": round(len(data) / 1e6 / seconds, 1)}
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
