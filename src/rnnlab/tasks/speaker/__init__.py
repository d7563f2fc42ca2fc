"""Speaker identification on Japanese Vowels (many-to-one): 12 LPC cepstrum channels per frame -> one of 9 speakers."""

from rnnlab.tasks import labelled, register

register(labelled(
    name="speaker",
    summary="utterance (frames x 12 LPC cepstra) -> one of 9 speakers",
    fetch="pypi_wheel",
    serve=".serve:Utterances",
    top_k=1,
    peers=(".peers:minirocket", ".peers:dtw_1nn"),
))
