import builtins
from pathlib import Path

import pytest

from sktorch_lr.__main__ import main


def test_demo_reports_and_writes_its_figures(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "lesson settings" in out and "defaults" in out
    assert out.count("accuracy 1.000") + out.count("accuracy 0.99") >= 3
    assert "Epoch 20:" in out  # progress while training
    names = {p.name for p in Path(tmp_path).iterdir()}
    assert names == {
        "decision_boundary.png",
        "loss_curves.png",
        "training_snapshots.png",
        "training.gif",
        "vs_sklearn.png",
    }
    for name in names:
        assert (tmp_path / name).stat().st_size > 10_000


def test_help_is_plain_text_with_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    top = capsys.readouterr().out
    assert "``" not in top and "demo" in top
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    demo = capsys.readouterr().out
    assert "``" not in demo and "(default: demo_output)" in demo and "lesson" in demo


def test_demo_without_matplotlib_names_the_extra(monkeypatch, tmp_path, capsys):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name.startswith("matplotlib"):
            raise ModuleNotFoundError("No module named 'matplotlib'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    assert main(["demo", "--out", str(tmp_path)]) == 2
    assert "sktorch_lr[plot]" in capsys.readouterr().err


def test_an_out_that_cannot_be_a_folder_is_an_error_not_a_traceback(tmp_path, capsys):
    taken = tmp_path / "a_file"
    taken.write_text("")
    assert main(["demo", "--out", str(taken), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: cannot write the figures to") and "Traceback" not in err
