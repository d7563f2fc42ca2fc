"""Speech recognition (task=speech): the Debian package slice read into recordings, log-mel features, the split
by syllable, CTC decoding (prefix beam search: beam 1 is greedy, and its probability is CTC's), the recurrent
model beside its window baseline, training and evaluation from the real conf/, `rnnlab transcribe` and the
pyfunc model, and bad audio."""

import base64
import io
import itertools
import json
import math

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
import torch.nn.functional as F
from datasets import load_from_disk

from rnnlab import RnnlabError
from rnnlab.cli import main
from rnnlab.pipeline.train import train
from rnnlab.shapes.unaligned import CTCRecognizer, WindowCTC, greedy, prefix_beam_search
from rnnlab.tasks.speech import data as S

from conftest import compose, run_task


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """pull + preprocess speech by the real stages, from the sliced Debian package (25 syllables, 47 recordings)."""
    root = tmp_path_factory.mktemp("speech")
    run_task(root, "speech")
    return root


def test_pull_reads_every_recording_with_its_label_and_speaker(project):
    raw = load_from_disk(str(project / "data/raw/speech"))
    assert raw.column_names == ["label", "speaker", "audio"]
    assert len(raw) == 47 and len(set(raw["label"])) == 25 and set(raw["speaker"]) == {"3", "5"}
    assert all(audio[:4] == b"OggS" for audio in raw["audio"])


def test_split_is_by_syllable_and_features_are_log_mel(project):
    processed = project / "data/processed/speech"
    splits = load_from_disk(str(processed))
    syllables = {s: set(splits[s]["syllable"]) for s in S.SPLITS}
    assert not syllables["train"] & syllables["test"] and not syllables["train"] & syllables["validation"]
    assert not syllables["validation"] & syllables["test"]
    # both speakers' recordings of a syllable are in the same split: the test syllables are unheard
    assert (len(syllables["test"]), len(syllables["validation"])) == (round(0.15 * 25), round(0.1 * 25))
    stats = json.loads((processed / "stats.json").read_text())
    assert stats["rows"] == {s: len(splits[s]) for s in S.SPLITS} and sum(stats["rows"].values()) == 47
    assert stats["tokens"] == list(S.TOKENS) and len(stats["mean"]) == stats["n_mels"] == 40
    manifest = json.loads((processed / "manifest.json").read_text())
    assert manifest["ㄉㄜ1"] == {"id": "d-e5", "pinyin": "de", "split": manifest["ㄉㄜ1"]["split"]}
    row = next(r for r in splits[manifest["ㄉㄜ1"]["split"]] if r["label"] == "ㄉㄜ1")
    assert [S.TOKENS[t - 1] for t in row["targets"]] == ["d", "e", "5"]
    # the frames are the log-mel energies of the decoded recording: 10 ms apart, 40 bands
    raw = load_from_disk(str(project / "data/raw/speech"))
    audio = next(r["audio"] for r in raw if r["label"] == row["label"] and r["speaker"] == row["speaker"])
    wave = S.load_audio(audio)
    frames = np.asarray(row["frames"])
    assert frames.shape == (1 + len(wave) // S.HOP, 40)
    assert np.allclose(frames, S.log_mel(wave, 40), atol=1e-5)


def test_split_errors_are_named():
    with pytest.raises(RnnlabError, match="validation \\+ test < 1"):
        S.split_syllables(["a", "b"], 0, 0.5, 0.6)


# --- decoding
def ctc_log_prob(log_probs: torch.Tensor, labels: list[int]) -> float:
    """log p(labels | frames) by torch's CTC loss: the sum over every path that collapses to `labels`."""
    if not labels:  # the all-blank path is the only one
        return float(log_probs[:, 0].sum())
    loss = F.ctc_loss(log_probs.unsqueeze(1), torch.tensor([labels]), torch.tensor([len(log_probs)]),
                      torch.tensor([len(labels)]), reduction="sum")
    return -float(loss)


def test_beam_1_is_greedy_and_greedy_collapses_repeats_and_blanks():
    lp = torch.log(torch.tensor([[.1, .8, .1], [.1, .8, .1], [.8, .1, .1], [.1, .8, .1], [.1, .1, .8]]))
    assert greedy(lp) == [1, 1, 2]
    torch.manual_seed(0)
    for _ in range(20):
        lp = torch.randn(12, 6).log_softmax(-1)
        assert prefix_beam_search(lp, 1)[0][0] == greedy(lp)


def test_prefix_beam_search_sums_the_paths_of_each_output():
    torch.manual_seed(1)
    lp = torch.randn(4, 3).log_softmax(-1)
    # a beam wide enough to keep every prefix: its scores are CTC's exact probabilities, and the best
    # output is the most probable labelling over all of them
    beams = prefix_beam_search(lp, 50)
    for labels, score in beams:
        assert math.isclose(score, ctc_log_prob(lp, labels), rel_tol=1e-5, abs_tol=1e-6)
    outputs = [list(out) for n in range(5) for out in itertools.product((1, 2), repeat=n)]  # every labelling of 4 frames
    assert beams[0][0] == max(outputs, key=lambda out: ctc_log_prob(lp, out))


def test_beam_search_can_beat_the_best_path():
    # the best path is blank-blank (empty output), but "1" has more probability over its paths
    lp = torch.log(torch.tensor([[.4, .35, .25], [.4, .35, .25]]))
    assert greedy(lp) == []
    assert prefix_beam_search(lp, 4)[0][0] == [1]


# --- models
def tiny(cls, **kwargs):
    torch.manual_seed(0)
    common = dict(tokens=list(S.TOKENS), n_mels=8, stack=2)
    if cls is CTCRecognizer:
        return cls(**common, cell="gru", hidden_size=8, num_layers=1, dropout=0.0, **kwargs).eval()
    return cls(**common, context=1, hidden_size=8, dropout=0.0, **kwargs).eval()


def test_frames_are_stacked_and_padding_does_not_change_the_output():
    model = tiny(CTCRecognizer)
    frames = torch.randn(1, 9, 8)
    alone, steps = model(frames, torch.tensor([9]))
    assert alone.shape == (1, 5, 43) and steps.tolist() == [5]
    padded, _ = model(torch.cat([frames, torch.randn(1, 6, 8)], 1), torch.tensor([9]))
    assert torch.allclose(padded[:, :5], alone, atol=1e-6)


def test_the_window_baseline_has_no_recurrence_and_the_recurrent_model_does():
    frames = torch.randn(1, 20, 8)
    changed = frames.clone()
    changed[0, -2:] += 5.0  # the last step (frames 18, 19)
    for cls, reaches_the_start in ((WindowCTC, False), (CTCRecognizer, True)):
        model = tiny(cls)
        a, _ = model(frames, torch.tensor([20]))
        b, _ = model(changed, torch.tensor([20]))
        assert torch.allclose(a[0, :8], b[0, :8]) != reaches_the_start, cls.__name__
        assert not torch.allclose(a[0, -1], b[0, -1])


# --- training, evaluation and use, from the real config
@pytest.fixture(scope="module")
def trained(project):
    out = project / "out"
    train(compose("task=speech", "experiment=smoke_speech", f"paths.data_dir={project}/data",
                  f"paths.output_dir={out}", f"logger.tracking_uri=sqlite:///{project}/mlflow.db"))
    return out


def test_train_and_evaluate_write_checkpoints_metrics_and_figures(trained):
    assert {p.name for p in (trained / "model").iterdir()} == {"model.ckpt", "baseline.ckpt", "run.json"}
    scores = json.loads((trained / "metrics" / "speech.json").read_text())
    keys = {"per", "syllable_accuracy", "tone_accuracy", "recordings", "beam_width", "greedy"}
    assert keys <= set(scores["test"]) and keys <= set(scores["val"])
    assert keys <= set(scores["baseline"]["window"]) and keys <= set(scores["baseline"]["window"]["val"])
    assert {"speaker_3", "speaker_5"} <= set(scores["test"]) and scores["test"]["beam_width"] == 2
    assert scores["test"]["recordings"] == scores["test"]["speaker_3"]["recordings"] + scores["test"]["speaker_5"]["recordings"]
    assert (trained / "reports" / "errors.csv").read_text().startswith("label,syllable,speaker,reference,decoded\n")
    figures = list((trained / "reports" / "figures").glob("speech_*.png"))
    assert len(figures) == 1 and figures[0].read_bytes()[:4] == b"\x89PNG"


def wav_bytes(wave: np.ndarray, rate: int, subtype: str = "PCM_16") -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, wave, rate, format="WAV", subtype=subtype)
    return buffer.getvalue()


def a_recording(project) -> tuple[bytes, str]:
    raw = load_from_disk(str(project / "data/raw/speech"))
    return raw[0]["audio"], raw[0]["label"]


def test_transcribe_prints_phones_zhuyin_pinyin_and_confidence(trained, project, tmp_path, capsys):
    audio, _ = a_recording(project)
    (tmp_path / "a.ogg").write_bytes(audio)
    main(["transcribe", str(tmp_path / "a.ogg"), "--checkpoint", str(trained / "model" / "model.ckpt")])
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["phones", "tone", "zhuyin", "pinyin", "confidence"]
    assert 0 <= float(lines[-1].split()[1]) <= 1


def test_audio_is_mixed_down_and_resampled(project):
    audio, _ = a_recording(project)
    mono = S.load_audio(audio)
    wave, rate = sf.read(io.BytesIO(audio), dtype="float32")
    stereo = S.load_audio(wav_bytes(np.stack([wave, wave], 1), rate, "FLOAT"))
    assert np.allclose(stereo, mono, atol=1e-6)
    at_8k = S.load_audio(wav_bytes(mono, 8000, "FLOAT"))  # another rate: resampled back to 16 kHz
    assert len(at_8k) == 2 * len(mono)


@pytest.mark.parametrize("content, message", [
    (b"not audio at all", "not audio that libsndfile reads"),
    (wav_bytes(np.zeros(0), 16000), "the audio is empty"),
    (wav_bytes(np.zeros(8000), 16000), "the audio is silent"),
    (wav_bytes(0.1 * np.ones(16000 * 3), 16000), "3.00 s of audio, longer than the 2 s the model takes"),
])
def test_bad_audio_is_a_one_line_error_with_exit_2(trained, tmp_path, monkeypatch, content, message, capsys):
    path = tmp_path / "in" / "bad.wav"
    path.parent.mkdir()
    path.write_bytes(content)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        main(["transcribe", str(path), "--checkpoint", str(trained / "model" / "model.ckpt")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and str(path) in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["bad.wav", "in"]  # nothing written


def test_pyfunc_model_transcribes_base64_audio_like_the_cli(trained, project, tmp_path):
    import mlflow
    from mlflow.exceptions import MlflowException

    from rnnlab.serving.pyfunc import save_pyfunc
    from rnnlab.tasks import load_checkpoint
    from rnnlab.tasks.speech.serve import transcribe

    ckpt = trained / "model" / "model.ckpt"
    model = mlflow.pyfunc.load_model(str(save_pyfunc("speech", ckpt, tmp_path / "speech")))
    audio, _ = a_recording(project)
    out = model.predict(pd.DataFrame({"audio": [base64.b64encode(audio).decode("ascii")]}), params={"beam_width": 2})
    expected = transcribe(load_checkpoint(ckpt, task="speech"), audio, beam=2)
    assert out.iloc[0].to_dict() == expected
    with pytest.raises(MlflowException, match="audio 0: not base64-encoded"):
        model.predict(pd.DataFrame({"audio": ["%%% not base64"]}))


# --- the English experiment (experiment=speech_en)
def test_english_transcripts_are_normalised_to_letters_and_spaces():
    from rnnlab.tasks.speech.english import normalise

    assert normalise("That agent is already logged on.  Please enter your agent number.") == \
        "that agent is already logged on please enter your agent number"
    assert normalise("at [@]") == "at" and normalise("[ascending tones]") == ""
    assert normalise("You've entered 9-1-1") == "you've entered"  # digits are not letters: left to the words


def test_english_prompts_pair_each_recording_with_its_transcript(tmp_path):
    import gzip

    from rnnlab.tasks.speech import english as E

    (tmp_path / E.SOUNDS / "digits").mkdir(parents=True)
    (tmp_path / E.TRANSCRIPTS).parent.mkdir(parents=True)
    lines = "; Core Asterisk Sounds\n\nadded: Added.\ndigits/1: one\nbeep: [a beep tone]\n"
    (tmp_path / E.TRANSCRIPTS).write_bytes(gzip.compress(lines.encode()))
    for name in ("added", "digits/1", "beep", "untranscribed"):
        (tmp_path / E.SOUNDS / f"{name}.wav").write_bytes(wav_bytes(0.1 * np.ones(800), 8000))
    rows = E.read_prompts(tmp_path)
    assert [(r["name"], r["text"]) for r in rows] == [("added", "added"), ("digits/1", "one")]


def test_the_english_experiment_composes():
    from rnnlab.core.validate import check_config

    cfg = compose("task=speech", "experiment=speech_en")
    check_config(cfg)
    assert cfg.data._target_ == "rnnlab.tasks.speech.english.EnglishDataModule" and not cfg.registry.enabled
