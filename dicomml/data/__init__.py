"""dicomml.data: labels keyed by UIDs, the manifest, patient-level splits, the tensor cache
and ``tf.data`` pipelines.

TensorFlow is imported only by the functions that build ``tf.data`` datasets.
"""

from __future__ import annotations

from dicomml.data.cache import FillReport, TensorCache, storage_dtype_for
from dicomml.data.labels import detect_key, normalize_key, read_labels
from dicomml.data.manifest import (MANIFEST_COLUMNS, Manifest, build_manifest, patient_key,
                                   read_manifest)
from dicomml.data.slices import SliceSelection, select_slices
from dicomml.data.split import SplitConfig, split_by_patient
from dicomml.data.tfdata import (OnTheFly, cache_dataset, encode_targets, load_tensors,
                                 predict_tensors)

__all__ = ["FillReport", "TensorCache", "storage_dtype_for", "detect_key", "normalize_key",
           "read_labels", "MANIFEST_COLUMNS", "Manifest", "build_manifest", "patient_key",
           "read_manifest", "SliceSelection", "select_slices", "SplitConfig",
           "split_by_patient", "OnTheFly", "cache_dataset", "encode_targets", "load_tensors",
           "predict_tensors"]
