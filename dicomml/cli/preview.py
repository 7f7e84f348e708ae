"""``dicomml preview``: a picture of what the model sees, titled with file, modality, frame."""

from __future__ import annotations

import argparse
import os
import sys

HELP = "write a PNG of what the model sees: each channel with its window, and the composite"
EXAMPLE = """example:
  dicomml preview CT/IM0001 -o preview.png                      # windows chosen for the file
  dicomml preview CT/IM0001 --windows brain,subdural,bone --size 224 -o preview.png
  dicomml preview CR/IM0001 --windows p1-p99 -o cr.jpg          # one window, JPEG
  dicomml preview CT/IM0001 --windows 40/80,file:0,-600/1500 -o mixed.png

Default windows: the file's own (its VOI LUT, else its (0028,1050)/(0028,1051) windows),
else a preset for the modality (CT: brain,subdural,bone for a head, lung,mediastinum,bone
for a chest, abdomen,lung,bone otherwise), else the 1st-99th percentile ignoring padding.
Windows: presets (brain, subdural, stroke, temporal_bone, bone, lung, mediastinum,
abdomen, soft_tissue, liver), explicit C/W (e.g. 40/80), the file's own (file, file:1,
file:BRAIN), a VOI LUT (voilut:0), or percentiles ignoring padding (p1-p99, minmax).
Colour images are shown as their RGB. The picture is PNG or JPEG by the -o extension."""

_HEAD = ("HEAD", "BRAIN", "SKULL", "NEURO")
_CHEST = ("CHEST", "LUNG", "THORAX", "PULMO")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="a DICOM file (opened read-only)")
    parser.add_argument("--windows", default=None,
                        help="comma-separated window choices: 3 (one per channel) or 1 "
                             "(replicated); default: chosen for the file (see below)")
    parser.add_argument("--frame", type=int, default=0,
                        help="0-based frame of a multi-frame file (default 0)")
    parser.add_argument("--size", type=int, default=224, help="tensor side (default 224)")
    parser.add_argument("--resize", default="pad", choices=["pad", "crop", "stretch"],
                        help="how a non-square image becomes square (default pad)")
    parser.add_argument("--fov-mm", type=float, default=None,
                        help="fixed field of view in mm using Pixel Spacing (0028,0030)")
    parser.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="the picture to write (.png, .jpg or .jpeg)")


def default_windows(image, header: dict) -> tuple[tuple[str, ...], str]:
    """The window choices for a file and why: its own, a modality preset, or percentiles."""
    if image.voi_luts:
        return ("voilut:0",), "the file's VOI LUT Sequence (0028,3010)"
    if image.windows:
        n = min(len(image.windows), 3)
        specs = tuple(f"file:{i}" for i in range(n)) if n == 3 else ("file:0",)
        return specs, "the file's windows (0028,1050)/(0028,1051)"
    modality = (image.modality or header.get("modality") or "").upper()
    if modality == "CT":
        where = " ".join(str(header.get(k) or "") for k in
                         ("body_part_examined", "series_description")).upper()
        if any(w in where for w in _HEAD):
            return ("brain", "subdural", "bone"), "CT head presets"
        if any(w in where for w in _CHEST):
            return ("lung", "mediastinum", "bone"), "CT chest presets"
        return ("abdomen", "lung", "bone"), "CT presets"
    return ("p1-p99",), "percentiles (no window in the file)"


def _check_input(args):
    from dicomml.errors import ConfigError, NoPixelDataError
    from dicomml.io.header import Skip, read_header

    if os.path.isdir(args.path):
        raise ConfigError(f"{args.path} is a folder: preview takes one DICOM file (list a "
                          f"folder's series with 'dicomml series {args.path}')")
    try:
        row = read_header(args.path)
    except Skip as e:
        raise ConfigError(f"{args.path}: {e.reason}") from None
    if not row.get("is_image"):
        raise NoPixelDataError(f"{args.path} holds no image ({row.get('object_kind')}): "
                               "preview needs a file with (7FE0,0010) Pixel Data")
    n = int(row.get("number_of_frames") or 1)
    if not 0 <= args.frame < n:
        raise ConfigError(f"--frame {args.frame} is out of range for {args.path}: it has {n} "
                          f"frame(s), numbered 0 to {n - 1}")
    return row


def run(args: argparse.Namespace, executor=None) -> int:
    """``dicomml preview``; ``executor``: a process pool of :mod:`dicomml.parallel` to decode
    in (one pool for many files), default a child process of its own."""
    from dicomml.cli._common import require_output
    from dicomml.io.isolated import read_image_isolated
    from dicomml.preprocess import Pipeline, PreprocessConfig
    from dicomml.preprocess.preview import image_format, save_preview

    image_format(args.output)  # the extension first: nothing decoded for a bad -o
    require_output(args.output, option="-o")
    row = _check_input(args)
    # decoded in a child process: a C decoder that aborts on a corrupt stream (GDCM, chosen
    # with DICOMML_DECODERS) is a one-line DecoderCrashedError, not this process killed
    image = read_image_isolated(args.path, frames=[args.frame], executor=executor)
    if args.windows is None:
        windows, why = default_windows(image, row)
    else:
        windows = tuple(w.strip() for w in args.windows.split(",") if w.strip())
        why = "--windows"
    if image.is_color:
        mode, why = "rgb", "colour image shown as RGB"
    else:
        mode = "replicate" if len(windows) == 1 else "windows"
    cfg = PreprocessConfig(windows=windows, mode=mode, size=args.size, resize=args.resize,
                           fov_mm=args.fov_mm, normalize="unit")
    pipeline = Pipeline(cfg)
    tensor = pipeline(image, 0)
    titles = pipeline.channel_labels(image, 0)
    n_frames = int(row.get("number_of_frames") or 1)
    heading = (f"{os.path.basename(args.path)} · {image.modality or '-'} · frame "
               f"{args.frame} of {n_frames} (0-based) · windows: {why}")
    save_preview(args.output, tensor, titles, heading)
    print(args.output, file=sys.stdout)
    return 0
