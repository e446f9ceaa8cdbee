"""The command-line side of marks: ``annotations convert``, ``annotations mask`` and ``import-marked``."""

from __future__ import annotations

import cv2

from cli import options as opt
from cli.progress import warn
from core.annotations.formats import format_for_writing, read_annotations, write_annotations
from core.annotations.from_mask import (DEFAULT_MIN_AREA_PX, DEFAULT_MIN_AREA_UM2, MAX_DOWNSAMPLE, marks_from_mask,
                                        min_area_l0_for, parse_value_map, read_label_mask)
from core.annotations.masks import rasterise
from core.annotations.model import DEFAULT_CLASSES
from core.atomic import atomic_write_bytes
from core.errors import BiopsiaError
from core.slide import open_slide


def add_parsers(sub) -> None:
    p = sub.add_parser("annotations", help="convert annotation files, or draw them as a mask")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = actions.add_parser("convert", help="convert between QuPath GeoJSON, ASAP XML and ImageScope XML "
                           "(by extension; .xml is written as ASAP unless --format imagescope)")
    a.add_argument("input", help=".geojson, .json or .xml file to read")
    a.add_argument("output", help="file to write")
    a.add_argument("--format", choices=("geojson", "asap", "imagescope"), help="output format (default: by extension)")
    a = actions.add_parser("mask", help="write the annotations as a PNG mask at one pyramid level: with --class, "
                           "255 inside that class; otherwise class i of n (in file order, from 1) is i * (255 // n)")
    a.add_argument("slide", help="the slide the annotations belong to (for its level sizes)")
    a.add_argument("annotations", help=".geojson or .xml annotation file")
    a.add_argument("--level", type=opt.natural, default=0, help="pyramid level (default 0)")
    a.add_argument("--out", required=True, help="PNG file to write")
    a.add_argument("--class", dest="class_name", help="only this class (binary mask)")
    a = actions.add_parser("from-mask", help="marks from a label mask (PNG or TIFF, 8- or 16-bit, one channel; "
                           "a grey JPEG with --threshold) of a slide: one class per mapped value, holes kept, "
                           "specks dropped")
    a.add_argument("mask", help="the label image, at the slide's size or shrunk by --downsample")
    a.add_argument("--slide", required=True, help="the slide the mask belongs to (for its size and µm/px)")
    a.add_argument("--map", dest="value_map", required=True, metavar="V=CLASS,...",
                   help="class per mask value, e.g. 1=Tumour,2=Benign (values not named are left out)")
    a.add_argument("--out", required=True, help="annotation file to write (.geojson or .xml)")
    a.add_argument("--format", choices=("geojson", "asap", "imagescope"), help="output format (default: by extension)")
    a.add_argument("--threshold", type=opt.number(0.0), metavar="GREY",
                   help="for a grey or blurred mask: pixels above this grey level are value 1, the others 0 "
                   "(then --map 1=CLASS), e.g. --threshold 127 for an 8-bit mask whose white is the class")
    a.add_argument("--downsample", type=opt.number(0.0, MAX_DOWNSAMPLE, low_open=True),
                   help="level-0 pixels per mask pixel (default: from the sizes, when a whole factor)")
    area = a.add_mutually_exclusive_group()
    area.add_argument("--min-area", type=opt.number(0.0), metavar="UM2",
                      help=f"drop marks smaller than this many µm² (default {DEFAULT_MIN_AREA_UM2:g} µm² when the "
                      f"slide has a µm/px, else {DEFAULT_MIN_AREA_PX:g} level-0 px²)")
    area.add_argument("--min-area-px", type=opt.number(0.0), metavar="PX2",
                      help="drop marks smaller than this many square level-0 pixels")

    p = sub.add_parser("import-marked", help="annotations from a copy of a slide a doctor marked with a pen")
    p.add_argument("original", help="the slide (or its unmarked image)")
    p.add_argument("marked", help="the marked copy (PNG or JPEG, may be downscaled)")
    p.add_argument("--out", required=True, help="annotation file to write (.geojson or .xml)")
    p.add_argument("--class", dest="class_name", default="Tumour", help="class of the marked regions (default Tumour)")


def annotations(args) -> int:
    return {"convert": convert, "mask": mask, "from-mask": from_mask}[args.action](args)


def convert(args) -> int:
    found = read_annotations(args.input)
    for warning in found.warnings:
        warn(warning)
    write_annotations(args.output, found.annotations, found.classes, format=args.format)
    print(f"{args.output} ({len(found.annotations)} annotations)")
    return 0


def mask(args) -> int:
    with open_slide(args.slide) as reader:
        if not 0 <= args.level < reader.level_count:
            raise BiopsiaError(f"{args.slide}: no level {args.level} (the slide has levels 0 to {reader.level_count - 1})")
        l0_w, l0_h = reader.dimensions
        lv_w, lv_h = reader.level_dimensions[args.level]
    found = read_annotations(args.annotations)
    for warning in found.warnings:
        warn(warning)
    names = [args.class_name] if args.class_name else [c.name for c in found.classes]
    step = 255 // max(1, len(names))  # class i of n (from 1) is drawn as i * (255 // n), to be visible
    values = {name: (i + 1) * step for i, name in enumerate(names)}
    downsample = max(l0_w / lv_w, l0_h / lv_h)
    try:
        image = rasterise(found.annotations, None, l0_w, l0_h, downsample, values, window=(0, 0, lv_w, lv_h))
    except ValueError as err:
        raise BiopsiaError(f"{args.slide}: level {args.level}: {err}") from err
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise BiopsiaError(f"{args.out}: could not encode the mask as PNG")
    atomic_write_bytes(args.out, data.tobytes())
    legend = ", ".join(f"{name}={value}" for name, value in values.items())
    print(f"{args.out} ({lv_w} x {lv_h}; {legend})")
    return 0


def from_mask(args) -> int:
    format_for_writing(args.out, args.format)  # an impossible output is refused before any work
    value_map = parse_value_map(args.value_map)
    with open_slide(args.slide) as reader:
        l0_w, l0_h = reader.dimensions
        slide_mpp = reader.mpp
    min_area_l0 = min_area_l0_for(slide_mpp, args.min_area, args.min_area_px)
    label = read_label_mask(args.mask)
    found = marks_from_mask(label, value_map, l0_w, l0_h, args.downsample, min_area_l0, path=args.mask,
                            threshold=args.threshold)
    for warning in found.warnings:
        warn(warning)
    write_annotations(args.out, found.annotations, found.classes, format=args.format)
    per_class = ", ".join(f"{name} {found.areas_l0.get(name, 0.0) * slide_mpp[0] * slide_mpp[1] / 1e6:.4g} mm²"
                          if slide_mpp else f"{name} {found.areas_l0.get(name, 0.0):.0f} px²"
                          for name in (c.name for c in found.classes))
    print(f"{args.out} ({len(found.annotations)} marks at downsample {found.downsample:g}; {per_class})")
    return 0


def import_marked_copy(args) -> int:
    # the pen finder loads scipy.ndimage (0.3 s of `biopsia --help` when imported with the rest)
    from core.annotations.marked import import_marked

    color = next((c.color for c in DEFAULT_CLASSES if c.name == args.class_name), (220, 30, 30))
    found = import_marked(args.original, args.marked, class_name=args.class_name, color=color)
    for warning in found.warnings:
        warn(warning)
    write_annotations(args.out, found.annotations, found.classes)
    print(f"{args.out} ({len(found.annotations)} regions)")
    return 0


COMMANDS = {"annotations": annotations, "import-marked": import_marked_copy}
