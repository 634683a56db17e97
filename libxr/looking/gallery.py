"""One self-contained HTML page showing PNGs — images embedded, so it can be mailed or archived."""

import base64
import html
import os

from libxr.atomic import atomic_output


def write_page(path, title, sections):
    """``sections``: [(heading, [png path, ...])]; PNGs are embedded as data URIs."""
    parts = [f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>",
             ("<style>body{font-family:sans-serif;margin:2em}img{max-width:100%;margin:.5em 0;"
              "border:1px solid #ddd}figcaption{color:#555;font-size:small}</style>"),
             f"<h1>{html.escape(title)}</h1>"]
    for heading, pngs in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>")
        for png in pngs:
            with open(png, "rb") as f:
                data = base64.b64encode(f.read()).decode("ascii")
            parts.append(f"<figure><img src='data:image/png;base64,{data}' alt='{html.escape(os.path.basename(png))}'>"
                         f"<figcaption>{html.escape(os.path.basename(png))}</figcaption></figure>")
    with atomic_output(path) as f:
        f.write("\n".join(parts) + "\n")
