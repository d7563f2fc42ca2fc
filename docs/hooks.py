"""MkDocs hook: serve the committed figures under reports/figures/ as figures/ of the site, so that the pages
show the pipeline's own figures without a copy in docs/."""

from __future__ import annotations

from pathlib import Path

from mkdocs.structure.files import File


def on_files(files, config):
    figures = Path(config["config_file_path"]).parent / "reports" / "figures"
    for png in sorted(figures.glob("*.png")):
        files.append(File.generated(config, f"figures/{png.name}", abs_src_path=str(png)))
    return files
