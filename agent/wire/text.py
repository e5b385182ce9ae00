"""Text from elsewhere, made safe for one log or terminal line.

A peer's string (a job id, a model name, a decoder's complaint about a bad value) can
hold a newline, which forges a log line, or an escape sequence, which clears a screen
or recolours it. Every line that may carry such text goes through `printable` first:
control characters become visible `\\xNN` escapes, and nothing else changes.
"""

from __future__ import annotations

import logging
import re

# Most characters of a peer's string an error reply or a log line quotes.
QUOTE_CHARS = 120

# C0 controls (newline, escape, NUL ...), DEL, and the C1 controls terminals also obey.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """`text` with every control character shown as a `\\xNN` escape (one line, no terminal codes)."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def quote(text: str, limit: int = QUOTE_CHARS) -> str:
    """At most `limit` characters of `text` (a peer's string in a reply or log line), escaped."""
    shown = text if len(text) <= limit else text[:limit] + f"... ({len(text)} characters)"
    return printable(shown)


class PrintableFormatter(logging.Formatter):
    """A log formatter whose every record is one line without control characters."""

    def format(self, record: logging.LogRecord) -> str:
        """The formatted record, control characters escaped (a traceback keeps its line breaks)."""
        message = printable(record.getMessage())
        record.message = message
        text = self.formatMessage(record)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            # Indented, so that no line of it (an exception's message may hold a peer's newline)
            # reads as a record of its own.
            text += "\n" + "\n".join("  " + printable(line) for line in record.exc_text.splitlines())
        if record.stack_info:
            text += "\n" + self.formatStack(record.stack_info)
        return text
