"""Replace one ``## section`` of ``bench/README.md`` (the benchmarks' ``--write-readme``)."""

from __future__ import annotations

from pathlib import Path

README = Path(__file__).resolve().parent / "README.md"


def replace_section(heading: str, body: str, readme: Path = README) -> None:
    """Write ``## heading`` + ``body`` in place of that section (or append it), atomically;
    the other sections are kept as they are."""
    from dicomml._atomic import atomic_write_text

    old = readme.read_text(encoding="utf-8") if readme.exists() else "# Benchmarks\n"
    section = f"## {heading}\n\n{body.rstrip()}\n"
    lines = old.split("\n")
    start = next((i for i, ln in enumerate(lines) if ln.strip() == f"## {heading}"), None)
    if start is None:
        new = old.rstrip("\n") + "\n\n" + section
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        new = "\n".join(lines[:start]) + "\n" + section + ("\n" + "\n".join(lines[end:])
                                                           if end < len(lines) else "")
    atomic_write_text(readme, new)
