"""Surname -> language (many-to-one): characters -> one of 14 languages."""

from rnnlab.tasks import labelled, register

register(labelled(
    name="surname",
    summary="surname -> its language (14)",
    fetch="pypi_wheel",
    serve=".serve:Surnames",
    top_k=3,
    # the strongest classical methods, fitted beside the model in the evaluate stage (peers.py)
    peers=(".peers:char_tfidf_lr",),
))
