"""Scripts without ``if __name__ == "__main__":`` (and scripts fed through stdin) can use
worker processes: the workers never run the script again."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

BODY = """\
import os
from dicomml.parallel import get_executor
print("TOP", os.getpid(), flush=True)
with get_executor("processes", workers=2, start_method={method!r}) as ex:
    got = sorted(r for _, r in ex.map_chunks(len, [[1] * k for k in range(1, 9)]))
print("RESULT", got, flush=True)
"""

GUARDED = """\
import os
from dicomml.parallel import get_executor

def main():
    with get_executor("processes", workers=2, start_method={method!r}) as ex:
        return sorted(r for _, r in ex.map_chunks(len, [[1] * k for k in range(1, 9)]))

print("TOP", os.getpid(), flush=True)
if __name__ == "__main__":
    print("RESULT", main(), flush=True)
"""


def _run(tmp_path, code: str, how: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    script = tmp_path / "script.py"
    script.write_text(code)
    if how == "file":
        cmd, stdin = [sys.executable, str(script)], None
    else:
        cmd, stdin = [sys.executable, "-"], code
    return subprocess.run(cmd, input=stdin, cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=180)


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
@pytest.mark.parametrize("how", ["file", "stdin"])
@pytest.mark.parametrize("template", [BODY, GUARDED], ids=["unguarded", "guarded"])
def test_workers_never_rerun_the_script(template, how, method, tmp_path):
    proc = _run(tmp_path, template.format(method=method), how)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    top = [ln for ln in lines if ln.startswith("TOP")]
    if template is GUARDED and how == "file":
        # a guarded script is still imported by its workers (Python's own behaviour): its
        # top level runs there, its guarded block does not
        assert len({ln.split()[1] for ln in top}) >= 1
    else:
        assert len(top) == 1, proc.stdout  # only the script's own process printed it
    assert lines.count("RESULT [1, 2, 3, 4, 5, 6, 7, 8]") == 1, proc.stdout + proc.stderr


def test_unguarded_detection(tmp_path):
    code = ("import sys\nfrom dicomml.parallel._mainguard import unguarded_main\n"
            "print('top:', unguarded_main() is not None)\n"
            "if __name__ == '__main__':\n"
            "    print('guarded:', unguarded_main() is not None)\n")
    proc = _run(tmp_path, code, "file")
    assert proc.stdout.split("\n")[:2] == ["top: True", "guarded: False"], proc.stderr
    proc = _run(tmp_path, code, "stdin")
    assert "top: True" in proc.stdout and "guarded: True" in proc.stdout  # stdin: never importable
