"""Copies of a DICOM file in another encoding, for parsers that must follow every one."""

from __future__ import annotations

from pathlib import Path

import pydicom


def rewrite_encoding(src, dst, *, implicit: bool, defined: bool) -> Path:
    """Write ``src`` to ``dst`` with every sequence and item of defined (``defined``) or
    undefined length, in Implicit VR Little Endian (``implicit``) or as it was."""
    ds = pydicom.dcmread(src)

    def walk(d):
        for elem in d:
            if elem.VR == "SQ":
                elem.is_undefined_length = not defined
                for item in elem.value:
                    item.is_undefined_length_sequence_item = not defined
                    walk(item)

    walk(ds)
    if implicit:
        ds.file_meta.TransferSyntaxUID = pydicom.uid.ImplicitVRLittleEndian
    ds.save_as(dst, enforce_file_format=True)
    return Path(dst)
