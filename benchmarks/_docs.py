"""Write one marked section of a Markdown file in docs/, leaving the other sections alone."""

from __future__ import annotations

import re
from pathlib import Path

DOCS = Path(__file__).resolve().parent.parent / "docs"


def write_section(file: str, key: str, body: str, title: str = "# Results\n\nWritten by the scripts in `benchmarks/`; each section names its command.\n") -> Path:
    path = DOCS / file
    path.parent.mkdir(parents=True, exist_ok=True)
    text = path.read_text() if path.exists() else title
    start, end = f"<!-- {key}:start -->", f"<!-- {key}:end -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        text = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
    return path
