"""File data (paths, names, tag values) as safe terminal text.

A Linux file name may hold any byte but "/" and NUL: newlines, ANSI escape sequences, bytes that
are not UTF-8 (which Python carries as surrogate escapes and cannot print). Printed raw they
forge lines, recolour or clear the terminal, or crash the output. Every path a command prints
goes through :func:`display`; machine output (JSON) keeps the exact str instead.
"""

from __future__ import annotations

_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def display(text: str) -> str:
    """``text`` as one line of printable text, every unprintable character escaped.

    Control characters (and other invisible ones: ``str.isprintable``) become ``\\n``, ``\\t``,
    ``\\x1b``, ``\\u202e``...; a byte that is not UTF-8 becomes ``\\xNN``, its value; a backslash
    becomes ``\\\\``, so an escape in the output never stands for two different names.
    """
    if text.isprintable() and "\\" not in text:
        return text
    out = []
    for ch in text:
        code = ord(ch)
        if ch in _NAMED:
            out.append(_NAMED[ch])
        elif ch.isprintable():
            out.append(ch)
        elif 0xDC80 <= code <= 0xDCFF:  # os.fsdecode's escape for an undecodable byte
            out.append(f"\\x{code - 0xDC00:02x}")
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)
