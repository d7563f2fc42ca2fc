"""rnnlab: recurrent neural networks, reproducible end to end."""

__version__ = "0.1.0"


class RnnlabError(Exception):
    """A problem with the user's input (file, key or value) that should end the command cleanly."""
