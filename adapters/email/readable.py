"""How mail shows people, times and text: addresses and names, times in one configured zone, a safe HTML part.

Core writes people and times as markers (`core.people`); every text mailed passes through
`Readable.text` first, so a reader sees `dana@example.com` and `2026-12-02 16:49 CET`, never
`<who:email:dana@example.com>` or an ISO timestamp with microseconds.

The HTML part is built from the plain text only: every character escaped, code blocks kept as
`<pre>`, inline styles only, and nothing remote (no images, fonts or style sheets to fetch).
"""

from __future__ import annotations

import html
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from core import ConfigError, people

UTC_ZONE = ZoneInfo("UTC")
FENCE = re.compile(r"^```[\w+-]*\s*$")
INLINE = re.compile(r"`([^`\n]+)`|\*\*([^*\n]+)\*\*")
FONT = "font-family:-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;font-size:14px;line-height:1.5;color:#1f2328"
PRE = (
    "font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:13px;background:#f6f8fa;"
    "padding:8px 12px;border-radius:6px;white-space:pre-wrap;word-break:break-word;margin:0 0 12px"
)
CODE = "font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;background:#f6f8fa;padding:1px 4px"


def zone(name: str) -> ZoneInfo:
    """The IANA zone EMAIL_TIMEZONE names; the error says how to fix it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ConfigError(
            f"EMAIL_TIMEZONE={name!r} is not a time zone; set it to an IANA name such as Europe/Berlin, or UTC"
        ) from exc


def person(identity: str) -> str:
    """An email identity as its address; anyone else by the readable name core gives them."""
    return people.display(identity)


@dataclass(frozen=True)
class Readable:
    """People and times for one mailbox's readers (one zone for all of them: mail has no viewer's zone)."""

    tz: ZoneInfo = UTC_ZONE

    def time(self, at: datetime) -> str:
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        local = at.astimezone(self.tz)
        name = local.tzname() or self.tz.key
        return f"{local:%Y-%m-%d %H:%M} {'UTC' if name in ('UTC', 'Etc/UTC') else name}"

    def text(self, text: str) -> str:
        return people.render(text, person, self.time)


def _inline(line: str) -> str:
    """One line escaped, with `code` and **bold** kept."""
    out, last = [], 0
    for match in INLINE.finditer(line):
        out.append(html.escape(line[last : match.start()]))
        if match.group(1) is not None:
            out.append(f'<code style="{CODE}">{html.escape(match.group(1))}</code>')
        else:
            out.append(f"<strong>{html.escape(match.group(2))}</strong>")
        last = match.end()
    out.append(html.escape(line[last:]))
    return "".join(out)


def html_blocks(text: str) -> str:
    """Paragraphs and code blocks of the plain text, escaped."""
    blocks: list[str] = []
    para: list[str] = []
    code: list[str] | None = None

    def flush() -> None:
        if para:
            blocks.append(f'<p style="margin:0 0 12px">{"<br>".join(_inline(line) for line in para)}</p>')
            para.clear()

    for line in text.splitlines():
        if FENCE.match(line.strip()):
            if code is None:
                flush()
                code = []
            else:
                blocks.append(f'<pre style="{PRE}">{html.escape(chr(10).join(code))}</pre>')
                code = None
        elif code is not None:
            code.append(line)
        elif line.strip():
            para.append(line)
        else:
            flush()
    if code is not None:  # an unclosed block: still shown as code
        blocks.append(f'<pre style="{PRE}">{html.escape(chr(10).join(code))}</pre>')
    flush()
    return "".join(blocks)


def html_document(inner: str) -> str:
    return (
        '<!DOCTYPE html><html><head><meta charset="utf-8"></head>'
        f'<body style="{FONT}"><div style="max-width:680px">{inner}</div></body></html>'
    )


def html_table(rows: list[tuple[str, str]], code: frozenset[str] = frozenset()) -> str:
    """Label / value rows; the labels in `code` keep their line breaks and spacing (arguments)."""
    cells = []
    for label, value in rows:
        shown = f'<pre style="{PRE}">{html.escape(value)}</pre>' if label in code else html_blocks(value)
        cells.append(
            '<tr><th align="left" valign="top" style="padding:6px 12px 6px 0;white-space:nowrap">'
            f'{html.escape(label)}</th><td style="padding:6px 0">{shown}</td></tr>'
        )
    return f'<table cellpadding="0" cellspacing="0" style="border-collapse:collapse;margin:0 0 12px">{"".join(cells)}</table>'
