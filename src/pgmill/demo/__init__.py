"""The demo: realistic shop data with known defects, a project for it, and a one-call end-to-end run."""

from __future__ import annotations

from pgmill.demo.datagen import DEFECT_KINDS, Manifest, TableManifest, generate, write_orders_csv
from pgmill.demo.project import write_demo_project
from pgmill.demo.run import DemoReport, TableReport, run_demo

__all__ = [
    "DEFECT_KINDS", "DemoReport", "Manifest", "TableManifest", "TableReport", "generate", "run_demo",
    "write_demo_project", "write_orders_csv",
]
