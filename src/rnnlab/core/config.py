"""The project's Hydra config: where conf/ is, and composing it in-process (tests, benchmarks) as `rnnlab train`
composes it on the command line."""

from __future__ import annotations

import os
from pathlib import Path

from rnnlab import RnnlabError


def config_dir() -> Path:
    """conf/ of the project in the working directory, else of the source checkout."""
    for candidate in (os.environ.get("RNNLAB_CONFIG_DIR"), "conf", Path(__file__).parents[3] / "conf"):
        if candidate and (Path(candidate) / "config.yaml").is_file():
            return Path(candidate).resolve()
    raise RnnlabError("no Hydra config found: run from the project root (conf/config.yaml) or set RNNLAB_CONFIG_DIR")


def compose(*overrides: str, conf: Path | None = None):
    """The config `rnnlab train OVERRIDES` runs with (conf: config_dir() unless given), outside a Hydra app."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    import rnnlab.core.resolvers  # noqa: F401  registers the config's resolvers (${bf16_if_supported:}, ${times:a,b})

    with initialize_config_dir(config_dir=str(conf or config_dir()), version_base="1.3"):
        return hydra_compose(config_name="config", overrides=list(overrides))
