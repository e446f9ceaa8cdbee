#!/usr/bin/env python3
"""Biopsia: the window by default, subcommands for headless work.

    biopsia [SLIDE ...]                 open slides in the window
    biopsia demo                        open the demo case
    biopsia info SLIDE [--json]         print a slide's metadata
    biopsia screenshot SLIDE --out PNG  render the window offscreen
    biopsia synth OUT.tiff              write a synthetic slide with known tumour
    biopsia annotations convert IN OUT  convert QuPath GeoJSON / ASAP XML / ImageScope XML
    biopsia annotations mask SLIDE ANNOTATIONS --level N --out PNG
                                        write a label mask of the annotations at a level
    biopsia annotations from-mask MASK --slide SLIDE --map 1=Tumour,... --out A.geojson
                                        marks from a label mask (one class per value, holes kept)
    biopsia import-marked ORIGINAL MARKED --out A.geojson
                                        annotations from a pen-marked copy of a slide
    biopsia dataset SLIDE_OR_PROJECT... --out DIR
                                        labelled tiles as MXNet RecordIO, lists and a manifest
    biopsia train DATASET --out MODEL   train a tile classifier (MXNet Gluon)
    biopsia test MODEL DATASET [--json] a model's confusion matrix, sensitivity, specificity, AUC
    biopsia validate-framework {mnist,fashion-mnist,cifar10} DIR
                                        check MXNet training on a public benchmark
    biopsia predict SLIDE... --model MODEL --out DIR
                                        probability grids, heatmaps, overviews, TIFF overlays
    biopsia evaluate DIR [--annotations ...] [--json]
                                        predictions against the doctors' marks
    biopsia measure SLIDE [--prediction DIR] [--json]
                                        marks' areas and lengths; cores' tumour length and involvement

This file only hands over: ``cli`` parses and prints, ``core`` and ``gui`` do the work.
"""

import faulthandler
import sys

from cli.app import main

__all__ = ["main"]

if __name__ == "__main__":
    faulthandler.enable()  # a crash in native code (Qt, OpenSlide, MXNet) prints each thread's stack
    sys.exit(main())
