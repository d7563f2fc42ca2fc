"""MkDocs hook: serve the committed figures (the gradient lab's reports/figures/, each task's reports/TASK/figures/)
as figures/ of the site, so that the pages show the pipeline's own figures without a copy in docs/."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File


def on_files(files, config):
    reports = Path(config["config_file_path"]).parent / "reports"
    for png in sorted([*reports.glob("figures/*.png"), *reports.glob("*/figures/*.png")]):
        files.append(File.generated(config, f"figures/{png.name}", abs_src_path=str(png)))
    return files
