"""Helpers shared by the benchmarks: CPU time and memory of a process tree, README sections.

CPU time of a process tree is counted per process with psutil.

``resource.getrusage(RUSAGE_CHILDREN)`` counts only children that were waited for: the
workers of :mod:`dicomml.parallel`'s process executor are children of the *forkserver*
(not of the caller), and Dask's workers are children of their nannies, so while those
live their CPU time never reaches the caller's ``RUSAGE_CHILDREN``. :func:`tree_cpu` adds,
for the process and every living descendant, its own user + system time and that of its
children it already waited for (a worker that exited and was reaped by the forkserver is
counted there); each second is counted once.
"""

from __future__ import annotations

import os
import platform
import re
import sys
import time
from pathlib import Path


def tree_cpu(pid: int | None = None) -> float:
    """User + system CPU seconds of ``pid`` (default: this process), of every living
    descendant, and of the exited processes they waited for (see the module docstring)."""
    import psutil

    root = psutil.Process(pid or os.getpid())
    total = 0.0
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.Error:  # exited in between
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


def tree_rss(pid: int | None = None) -> int:
    """Resident bytes of ``pid`` and of every living descendant."""
    import psutil

    root = psutil.Process(pid or os.getpid())
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.Error:
            continue
    return total


def write_section(path: Path, heading: str, section: str) -> None:
    """Replace the ``## heading`` section of the Markdown file ``path`` (up to the next
    ``## ``) by ``section``, or append it; written atomically."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from dicomml._atomic import atomic_write_text

    text = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(r"^## " + re.escape(heading) + r"\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda m: section, text)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    atomic_write_text(path, text)


def run_line(script: str, argv) -> str:
    """``\`python bench/SCRIPT ARGS\` on DATE, machine, CPUs, Python`` for a README."""
    args = " ".join(sys.argv[1:] if argv is None else argv)
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return (f"`python bench/{script} {args}` on {when}, {platform.machine()}, "
            f"{os.cpu_count()} CPUs, Python {platform.python_version()}")
