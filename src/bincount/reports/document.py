"""A report as a list of blocks, written as Markdown (PNGs beside it) and as HTML (pictures
inlined, one file to open or mail)."""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass


@dataclass(frozen=True)
class Heading:
    text: str
    level: int = 2


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class Table:
    header: list[str]
    rows: list[list]


@dataclass(frozen=True)
class Picture:
    name: str  # file name of the PNG beside the Markdown report
    alt: str


@dataclass(frozen=True)
class Items:
    items: list[str]


Block = Heading | Text | Table | Picture | Items

_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1000px;margin:24px auto;padding:0 12px}"
    "table{border-collapse:collapse;margin:8px 0}"
    "th,td{border:1px solid #ccc;padding:3px 8px}td{text-align:right}"
    "td:first-child{text-align:left}img{max-width:100%}"
)


def _cell(value) -> str:
    return f"{value:,.3g}" if isinstance(value, float) else str(value)


def markdown(blocks: list[Block]) -> str:
    out: list[str] = []
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"{'#' * b.level} {b.text}")
        elif isinstance(b, Text):
            out.append(b.text)
        elif isinstance(b, Table):
            out.append("| " + " | ".join(b.header) + " |")
            out.append("|" + "|".join(" --- " for _ in b.header) + "|")
            out += [
                "| " + " | ".join(_cell(c).replace("|", "\\|") for c in r) + " |" for r in b.rows
            ]
        elif isinstance(b, Picture):
            out.append(f"![{b.alt}]({b.name})")
        elif isinstance(b, Items):
            out += [f"- {item}" for item in b.items]
        out.append("")
    return "\n".join(out)


def to_html(blocks: list[Block], title: str, pictures: dict[str, bytes]) -> str:
    e = html.escape
    out = [f"<!doctype html><meta charset=utf-8><title>{e(title)}</title><style>{_STYLE}</style>"]
    for b in blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Text):
            out.append(f"<p>{e(b.text)}</p>")
        elif isinstance(b, Table):
            head = "".join(f"<th>{e(h)}</th>" for h in b.header)
            body = "".join(
                "<tr>" + "".join(f"<td>{e(_cell(c))}</td>" for c in r) + "</tr>" for r in b.rows
            )
            out.append(f"<table><tr>{head}</tr>{body}</table>")
        elif isinstance(b, Picture):
            data = base64.b64encode(pictures[b.name]).decode()
            out.append(f'<img alt="{e(b.alt)}" src="data:image/png;base64,{data}">')
        elif isinstance(b, Items):
            out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>")
    return "\n".join(out) + "\n"
