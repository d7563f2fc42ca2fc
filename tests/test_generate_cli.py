import pytest

from rnnlab.cli import main
from rnnlab.pipeline.train import train

from conftest import compose


@pytest.fixture(scope="module")
def checkpoint(processed, tmp_path_factory):
    out = tmp_path_factory.mktemp("gen")
    cfg = compose("experiment=smoke_charlm", "test=false", f"paths.data_dir={processed.parents[1]}",
                  f"paths.output_dir={out}", f"logger.tracking_uri=sqlite:///{out}/mlflow.db")
    train(cfg)
    return out / "model" / "model.ckpt"


def run(args, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["generate", *args])
    return exit_info.value.code, capsys.readouterr()


def test_generate_prints_prompt_and_sample(checkpoint, capsys):
    main(["generate", "--prompt", "ROMEO:", "--length", "50", "--temperature", "0.8", "--seed", "1",
          "--checkpoint", str(checkpoint)])
    out = capsys.readouterr().out.rstrip("\n")
    assert out.startswith("ROMEO:") and len(out) == len("ROMEO:") + 50
    main(["generate", "--prompt", "ROMEO:", "--length", "50", "--temperature", "0", "--checkpoint", str(checkpoint)])
    greedy = capsys.readouterr().out
    main(["generate", "--prompt", "ROMEO:", "--length", "50", "--temperature", "0", "--checkpoint", str(checkpoint)])
    assert capsys.readouterr().out == greedy
    # `rnnlab generate charlm ...` names the model; without it the char LM is the default
    main(["generate", "charlm", "--prompt", "ROMEO:", "--length", "50", "--temperature", "0",
          "--checkpoint", str(checkpoint)])
    assert capsys.readouterr().out == greedy


@pytest.mark.parametrize("args, message", [
    (["--length", "-5"], "--length must be >= 0, got -5"),
    (["--temperature", "-1"], "--temperature must be >= 0"),
    (["--prompt", "ROMEO: \u00e9t\u00e9"], "never seen"),
    (["--checkpoint", "/nonexistent/model.ckpt"], "checkpoint not found: /nonexistent/model.ckpt"),
    (["--length", "ten"], "invalid int value: 'ten'"),
])
def test_generate_errors_are_one_line_with_exit_2(checkpoint, capsys, args, message):
    if "--checkpoint" not in args:
        args = [*args, "--checkpoint", str(checkpoint)]
    code, captured = run(args, capsys)
    assert code == 2
    assert message in captured.err
    assert len(captured.err.strip().splitlines()) == 1 and captured.err.startswith("rnnlab: error:")


def test_generate_rejects_a_corrupted_checkpoint(tmp_path, capsys):
    bad = tmp_path / "model.ckpt"
    bad.write_bytes(b"not a checkpoint")
    code, captured = run(["--checkpoint", str(bad)], capsys)
    assert code == 2 and captured.err.startswith(f"rnnlab: error: cannot load checkpoint {bad}")
