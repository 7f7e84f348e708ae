"""dicomml.serve: dicomml as a DICOM node.

A C-STORE SCP receives studies into a spool (optionally also polled from a DICOMweb PACS,
:mod:`dicomml.serve.poll`); a study with no new instance for a quiet period
(or triggered) is complete; its series are checked against the run's input contract; the
eligible ones are predicted, and the SR and heatmaps are stored back (C-STORE or STOW-RS)
with retries. A persistent SQLite queue makes every study finish exactly once across
crashes. ``Node(ServeConfig(run_dir, ...)).run()`` or ``serve(config)``; ``status(spool)``.

Never imports TensorFlow until the first prediction.
"""

from __future__ import annotations

from dicomml._lazy import lazy_exports

_LAZY = {
    "ServeConfig": "dicomml.serve.config",
    "load_serve_toml": "dicomml.serve.config",
    "parse_destination": "dicomml.serve.config",
    "Node": "dicomml.serve.node",
    "serve": "dicomml.serve.node",
    "JobQueue": "dicomml.serve.queue",
    "status": "dicomml.serve.monitor",
    "trigger": "dicomml.serve.monitor",
}

__getattr__, __dir__, __all__ = lazy_exports(__name__, _LAZY, eager=())
