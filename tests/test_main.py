from pathlib import Path

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
