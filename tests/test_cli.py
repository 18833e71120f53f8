"""Every command checks its flags before it loads anything: a bad value stops it with the allowed values."""
import pytest

from tests.conftest import run_module

BAD_FLAGS = [  # command, then the words argparse must say
    (["finetune", "--data", "d", "--split", "s", "--loss", "foo"], "invalid choice: 'foo' (choose from 'bce', 'asl')"),
    (["cnn", "--data", "d", "--split", "s", "--precision", "fp8"], "invalid choice: 'fp8' (choose from 'auto', 'fp32'"),
    (["cnn", "--data", "d", "--split", "s", "--pos-weight", "maybe"], "'maybe' is not a yes/no value"),
    (["cnn", "--data", "d", "--split", "s", "--schedule", "linear"], "(choose from 'cosine', 'onecycle')"),
    (["cnn", "--data", "d", "--split", "s", "--augment", "heavy"], "(choose from 'none', 'light', 'strong')"),
    (["cnn", "--data", "d", "--split", "s", "--widths", "4,x"], "give block widths as comma-separated counts"),
    (["extract", "--data", "d", "--split", "s", "--out", "o.h5", "--backbone", "vgg"], "invalid backbone 'vgg'"),
    (["heads", "--features", "f.h5", "--cv", "5"], "give FOLDSxREPEATS, e.g. 5x2"),
    (["heads.final", "--features", "f.h5", "--folds", "1"], "out-of-fold predictions need 2 folds or more"),
    (["extract", "--data", "d", "--split", "s", "--out", "o.h5", "--engine", "tensorrt"],
     "invalid choice: 'tensorrt' (choose from 'auto', 'torch', 'onnxruntime')"),
    (["predict", "--model", "m", "--images", "i", "--out", "o.csv", "--part", "dev"], "invalid choice: 'dev'"),
    (["posters", "download", "--csv", "c.csv", "--out-dir", "d", "--rate", "fast"], "invalid float value: 'fast'"),
    (["posters", "split", "--out", "s.json"], "the following arguments are required: --data"),
    (["serve", "--model", "m", "--max-clients", "many"], "invalid int value: 'many'"),
    (["explain", "poster", "--model", "m", "--image", "i", "--out", "o.png"], "required: --genre"),
    (["evaluation.ensemble"], "the following arguments are required: --dataset"),
]


@pytest.mark.parametrize("command, message", BAD_FLAGS, ids=lambda c: c[0] if isinstance(c, list) else "")
def test_a_bad_flag_stops_the_command_at_once(command, message):
    result = run_module(*command, check=False)
    assert result.returncode == 2  # argparse's: nothing was loaded or written
    assert message in result.stderr.replace("\n", " ").replace("  ", " "), result.stderr


def test_help_shows_every_default():
    help_text = run_module("cnn", "--help").stdout
    for flag, default in (("--epochs", "15"), ("--augment", "strong"), ("--loss", "bce"), ("--seed", "0")):
        described = help_text[help_text.index(f"\n  {flag}"):]  # the options list, not the usage line
        assert f"(default: {default})" in " ".join(described.split("\n  -")[1].split()), flag
