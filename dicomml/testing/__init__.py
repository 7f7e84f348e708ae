"""Generators of realistic synthetic DICOM studies (see DESIGN.md).

Used by the tests, the committed ``sample_dicom/`` export and the benchmarks. Everything is
deterministic: the same seed writes byte-identical files (UIDs, names and dates derive from
the seed, never from the clock). This package never imports TensorFlow.

Main entry points
-----------------
write_ct_series, write_mr_series, write_radiograph, write_enhanced_ct,
write_secondary_capture, write_sr, write_key_object_selection, write_head_ct_task,
make_export, write_chest_nodule_task (study labels, a nodule on a few slices);
Patient / Study (make_patient, make_study) to share a study between series.
"""

from .chest_task import read_task_masks, write_chest_nodule_task
from .ct import render_plane, series_geometry, write_ct_series
from .enhanced import write_enhanced_ct
from .export import Export, make_export
from .nonimage import write_key_object_selection, write_sr
from .other import write_mr_series, write_radiograph, write_secondary_capture
from .people import Patient, Study, make_patient, make_study
from .phantom import HU, Tissue, random_anatomy, render_labels
from .task import write_head_ct_task

__all__ = [
    "write_ct_series", "write_mr_series", "write_radiograph", "write_enhanced_ct",
    "write_secondary_capture", "write_sr", "write_key_object_selection", "write_head_ct_task",
    "make_export", "Export", "write_chest_nodule_task", "read_task_masks",
    "Patient", "Study", "make_patient", "make_study",
    "render_plane", "series_geometry", "render_labels", "random_anatomy", "Tissue", "HU",
]
