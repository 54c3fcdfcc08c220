from sktorch_lr.__main__ import main


def test_demo_prints_epochs_loss_and_accuracy(capsys):
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "lesson settings" in out and "defaults" in out
    assert out.count("accuracy 1.000") + out.count("accuracy 0.99") >= 2
