"""`medsft: <message>` error lines, clean whatever llama.cpp's messages carry (carriage returns, no final newline)."""

from __future__ import annotations

import sys


def error_line(message: object) -> None:
    """`medsft: ` and the message's non-empty lines on stderr (a carriage return is a line break)."""
    lines = str(message).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [line.rstrip() for line in lines if line.strip()] or ["error"]
    sys.stdout.flush()  # C code writes to the same terminal
    sys.stderr.write("".join(f"{'medsft: ' if i == 0 else ''}{line}\n" for i, line in enumerate(lines)))
    sys.stderr.flush()
