"""Sentiment of movie-review snippets (many-to-one): words -> negative | positive."""

from rnnlab.tasks import labelled, register

register(labelled(
    name="sentiment",
    summary="movie-review snippet -> negative | positive",
    fetch="pypi_sdist",
    serve=".serve:Snippets",
    top_k=1,
    # the strongest classical methods, fitted beside the model in the evaluate stage (peers.py)
    peers=(".peers:tfidf_lr", ".peers:nbsvm"),
))
