"""``dicomml preview``: a PNG of each channel (titled with its window) and the RGB composite."""

from __future__ import annotations

import argparse
import sys

HELP = "write a PNG of what the model sees: each channel with its window, and the composite"
EXAMPLE = """example:
  dicomml preview CT/IM0001 --windows brain,subdural,bone --size 224 -o preview.png
  dicomml preview CR/IM0001 --windows p1-p99 -o cr.png          # one window, replicated
  dicomml preview CT/IM0001 --windows 40/80,file:0,-600/1500 -o mixed.png

Windows: presets (brain, subdural, stroke, temporal_bone, bone, lung, mediastinum, abdomen,
soft_tissue, liver), explicit C/W (e.g. 40/80), the file's own (file, file:1, file:BRAIN),
a VOI LUT (voilut:0), or percentiles ignoring padding (p1-p99, minmax). Colour images are
shown as their RGB."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", metavar="PATH", help="a DICOM file (opened read-only)")
    parser.add_argument("--windows", default="brain,subdural,bone",
                        help="comma-separated window choices: 3 (one per channel) or 1 "
                             "(replicated); default: brain,subdural,bone")
    parser.add_argument("--frame", type=int, default=0, help="0-based frame (default 0)")
    parser.add_argument("--size", type=int, default=224, help="tensor side (default 224)")
    parser.add_argument("--resize", default="pad", choices=["pad", "crop", "stretch"],
                        help="how a non-square image becomes square (default pad)")
    parser.add_argument("--fov-mm", type=float, default=None,
                        help="fixed field of view in mm using Pixel Spacing (0028,0030)")
    parser.add_argument("-o", "--output", required=True, help="the PNG to write")


def run(args: argparse.Namespace) -> int:
    from dicomml.io import read_image
    from dicomml.preprocess import Pipeline, PreprocessConfig
    from dicomml.preprocess.preview import save_preview

    windows = tuple(w.strip() for w in args.windows.split(",") if w.strip())
    image = read_image(args.path, frames=[args.frame])
    if image.is_color:
        mode = "rgb"
    else:
        mode = "replicate" if len(windows) == 1 else "windows"
    cfg = PreprocessConfig(windows=windows, mode=mode, size=args.size, resize=args.resize,
                           fov_mm=args.fov_mm, normalize="unit")
    pipeline = Pipeline(cfg)
    tensor = pipeline(image, 0)
    titles = pipeline.channel_labels(image, 0)
    save_preview(args.output, tensor, titles)
    print(args.output, file=sys.stdout)
    return 0
