"""The configuration reference: every key of a training TOML, its default and its meaning.

Generated from the configuration dataclasses themselves (their defaults and the numpydoc
``Attributes`` of their docstrings), so it cannot drift from the code. Shown by
``dicomml train --help`` and written to ``docs/configuration.md``.
"""

from __future__ import annotations

import dataclasses
import inspect
import re

__all__ = ["config_reference", "markdown", "EXAMPLES"]

#: One example per kind of task (the paths are placeholders).
EXAMPLES = {
    "study labels, a finding on a few slices (multiple-instance learning)": """\
[data]
folder = "chest_ct"
labels = "chest_ct/labels.csv"     # StudyInstanceUID,label
classes = ["normal", "nodule"]
positive_class = "nodule"
cache = "~/.cache/dicomml/tensors"

[preprocess]
windows = "lung"
mode = "replicate"
size = 128

[model]
level = "study"                    # a patch classifier shared by the slices, max-pooled

[report]                           # the finding in the DICOM SR
finding_code = "SCT:27925004"      # Nodule
finding_site = "SCT:39607008"      # Lung
""",
    "a label per image (slice-level classification)": """\
[data]
folder = "radiographs"
labels = "radiographs/labels.csv"  # SOPInstanceUID,label
key = "SOPInstanceUID"

[preprocess]
mode = "replicate"
windows = ["file:0"]

[model]
name = "reference_cnn"
""",
    "regression": """\
[data]
folder = "ct"
labels = "ct/age.csv"              # StudyInstanceUID,age
label_column = "age"
task = "regression"

[train]
monitor = "val_loss"
""",
}


def _attributes(cls) -> dict[str, tuple[str, str]]:
    """``name → (type line, description)`` from the numpydoc Attributes section."""
    doc = inspect.getdoc(cls) or ""
    m = re.search(r"Attributes\n-+\n(.*?)(\n\S[^\n]*\n-+\n|\Z)", doc, re.S)
    out: dict[str, tuple[str, str]] = {}
    if not m:
        return out
    names, typ, desc = None, "", []
    for line in m.group(1).splitlines() + ["END :"]:
        if line and not line.startswith(" "):
            if names:
                for n in names:
                    out[n] = (typ, " ".join(desc).strip())
            head, _, typ = line.partition(" : ")
            if not _:
                head, typ = line.rstrip(" :"), ""
            names = [n.strip() for n in head.split(",")]
            desc = []
        elif line.strip():
            desc.append(line.strip())
    return out


def _default(f) -> str:
    if f.default is not dataclasses.MISSING:
        v = f.default
    elif f.default_factory is not dataclasses.MISSING:
        v = f.default_factory()
        if dataclasses.is_dataclass(v):
            return "(table)"
    else:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, tuple):
        v = list(v)
    if v is None:
        return "(none)"
    return repr(v).replace("'", '"')


def _table(title: str, cls, skip=()) -> list[str]:
    attrs = _attributes(cls)
    lines = [f"[{title}]"]
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        typ, desc = attrs.get(f.name, ("", ""))
        lines.append(f"  {f.name} = {_default(f)}" + (f"    # {typ}" if typ else ""))
        if desc:
            lines.append("      " + desc)
    return lines


def config_reference(examples: bool = True) -> str:
    """The reference as plain text (each table, each key with its default, one example per
    task kind)."""
    from dicomml.data.slices import SliceSelection
    from dicomml.data.split import SplitConfig
    from dicomml.preprocess.augment import AugmentConfig
    from dicomml.preprocess.config import PreprocessConfig
    from dicomml.train.config import DataConfig, ModelConfig, ReportConfig, TrainConfig

    parts = ["configuration reference (key = default    # type or allowed values):", ""]
    for title, cls, skip in (("data", DataConfig, ("slices",)),
                             ("data.slices", SliceSelection, ()),
                             ("split", SplitConfig, ()),
                             ("preprocess", PreprocessConfig, ("augment", "version")),
                             ("preprocess.augment", AugmentConfig, ()),
                             ("model", ModelConfig, ("kwargs",)),
                             ("train", TrainConfig, ()),
                             ("report", ReportConfig, ())):
        parts += _table(title, cls, skip) + [""]
    parts.append("[model] also takes the model builder's options as keys (reference_cnn: "
                 "filters, dense_units, global_pool, l2, dropout, batch_norm).")
    parts.append("The resolved configuration (every default filled in) is written to "
                 "RUN_DIR/config.toml.")
    if examples:
        for title, text in EXAMPLES.items():
            parts += ["", f"example — {title}:", ""]
            parts += ["  " + line if line else "" for line in text.splitlines()]
    return "\n".join(parts) + "\n"


def markdown() -> str:
    """``docs/configuration.md``."""
    return ("# Training configuration reference\n\n"
            "Every key of a `dicomml train` TOML file with its default. The same text is "
            "printed by `dicomml train --help`; it is generated from the configuration "
            "classes (`python -m dicomml.train.config_doc > docs/configuration.md` rewrites "
            "this file, and a test checks that it is current).\n\n```text\n"
            + config_reference() + "```\n\n" + WORKERS)


#: ``docs/configuration.md``: the one meaning of ``workers`` (DESIGN words; the full text is
#: the docstring of :func:`dicomml.parallel.resolve_workers`).
WORKERS = """\
## `workers`: one meaning everywhere

`[data] workers`, every CLI verb's `--workers` and the `workers=` argument of the Python API
(`dicomml.io.scan`, `read_series`, `read_images`, `TensorCache.fill`, `OnTheFly`,
`predict_tensors`, `evaluate_run`, `predict`) are read by `dicomml.parallel.resolve_workers`
and mean **how many CPUs the work may keep busy at once**:

| value | meaning |
| --- | --- |
| left out / `None` | every CPU this process may run on (its CPU affinity: a container's or `taskset`'s limit); `-1` is accepted for the same (earlier configurations wrote `workers = -1`) |
| `0` | everything in this process: no worker process or thread pool, and so no crash isolation |
| `N >= 1` | at most N at once |

What carries the work is each entry point's own business: the scan reads headers in N
processes counting the caller (it reads too; 1 is the same as 0); the tensor cache and
on-the-fly decoding (and `read_images`) run N worker processes while the caller gathers (1
is one isolated worker); `read_series` decodes with N threads. Any other value is an error
that says what to write.
"""


if __name__ == "__main__":
    print(markdown(), end="")
