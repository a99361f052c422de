"""Render the report's blocks twice: Markdown linking the PNGs beside it, and one HTML page
with every PNG embedded as a base64 data: URI, so the single file opens from disk, mails as an
attachment and needs no server.

A block is a tuple: ("h1" | "h2" | "p", text), ("ul", [item text, ...]), ("table", header,
rows) or ("img", path, caption).
"""

from __future__ import annotations

import base64
import html


def to_markdown(blocks: list) -> str:
    out = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2"):
            out.append(("# " if kind == "h1" else "## ") + rest[0])
        elif kind == "p":
            out.append(rest[0])
        elif kind == "ul":
            out.append("\n".join(f"- {item}" for item in rest[0]))
        elif kind == "table":
            head, rows = rest
            out.append("\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                                 + ["| " + " | ".join(r) + " |" for r in rows]))
        elif kind == "img":
            out.append(f"![{rest[1]}]({rest[0].name})")
    return "\n\n".join(out) + "\n"


def to_html(blocks: list) -> str:
    body = []
    for kind, *rest in blocks:
        if kind in ("h1", "h2", "p"):
            body.append(f"<{kind}>{html.escape(rest[0])}</{kind}>")
        elif kind == "ul":
            body.append("<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in rest[0]) + "</ul>")
        elif kind == "table":
            head, rows = rest
            body.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head)
                        + "</tr>" + "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r)
                                            + "</tr>" for r in rows) + "</table>")
        elif kind == "img":
            data = base64.b64encode(rest[0].read_bytes()).decode("ascii")
            body.append(f'<figure><img alt="{html.escape(rest[1])}" '
                        f'src="data:image/png;base64,{data}"><figcaption>'
                        f"{html.escape(rest[1])}</figcaption></figure>")
    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto;padding:1em}"
             "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
             "padding:2px 8px;text-align:left}img{max-width:100%}li{margin:.3em 0}")
    title = next((rest[0] for kind, *rest in blocks if kind == "h1"), "Scaling-law fit report")
    return ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{style}</style></head><body>\n"
            + "\n".join(body) + "\n</body></html>\n")
