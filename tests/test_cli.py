"""Every command checks its flags before it loads anything: a bad value stops it with the allowed values."""
import importlib.util

import pytest

BAD_FLAGS = [  # command, then the words argparse must say
    (["finetune", "--data", "d", "--split", "s", "--loss", "foo"], "invalid choice: 'foo' (choose from 'bce', 'asl')"),
    (["cnn", "--data", "d", "--split", "s", "--precision", "fp8"], "invalid choice: 'fp8' (choose from 'auto', 'fp32'"),
    (["cnn", "--data", "d", "--split", "s", "--pos-weight", "maybe"], "'maybe' is not a yes/no value"),
    (["cnn", "--data", "d", "--split", "s", "--schedule", "linear"], "(choose from 'cosine', 'onecycle')"),
    (["cnn", "--data", "d", "--split", "s", "--augment", "heavy"], "(choose from 'none', 'light', 'strong')"),
    (["cnn", "--data", "d", "--split", "s", "--widths", "4,x"], "give block widths as comma-separated counts"),
    (["cnn", "--data", "d", "--split", "s", "--epochs", "0"], "argument --epochs: 0 is less than 1"),
    (["finetune", "--data", "d", "--split", "s", "--batch-size", "x"], "argument --batch-size: 'x' is not a number"),
    (["extract", "--data", "d", "--split", "s", "--out", "o.h5", "--backbone", "timm:../x"],
     "invalid backbone 'timm:../x'"),
    (["heads", "--features", "f.h5", "--cv", "5"], "give FOLDSxREPEATS, e.g. 5x2"),
    (["heads.final", "--features", "f.h5", "--folds", "1"], "out-of-fold predictions need 2 folds or more"),
    (["predict", "--model", "m", "--images", "i", "--out", "o.csv", "--part", "dev"], "invalid choice: 'dev'"),
    (["posters", "download", "--csv", "c.csv", "--out-dir", "d", "--rate", "fast"], "invalid float value: 'fast'"),
    (["posters", "split", "--out", "s.json"], "the following arguments are required: --data"),
    (["serve", "--model", "m", "--max-clients", "many"], "invalid int value: 'many'"),
    (["explain", "poster", "--model", "m", "--image", "i", "--out", "o.png"], "required: --genre"),
    (["ensemble"], "the following arguments are required: --dataset"),
    (["ensemble.final"], "the following arguments are required: --features"),
]


def run_in_process(module: str, *args: str) -> int:
    """`python -m module args...` as its `main(argv)`, in this process (no interpreter start-up per command)."""
    name = f"postergenre.{module}"
    command = importlib.import_module(f"{name}.__main__" if importlib.util.find_spec(name).submodule_search_locations
                                      else name)
    with pytest.raises(SystemExit) as exit_:
        command.main(list(args))
    return exit_.value.code


@pytest.mark.parametrize("command, message", BAD_FLAGS, ids=lambda c: c[0] if isinstance(c, list) else "")
def test_a_bad_flag_stops_the_command_at_once(command, message, capsys):
    assert run_in_process(*command) == 2  # argparse's: nothing was loaded or written
    stderr = capsys.readouterr().err
    assert message in stderr.replace("\n", " ").replace("  ", " "), stderr


def test_help_shows_every_default(capsys):
    assert run_in_process("cnn", "--help") == 0
    help_text = capsys.readouterr().out
    for flag, default in (("--epochs", "15"), ("--augment", "strong"), ("--loss", "bce"), ("--seed", "0")):
        described = help_text[help_text.index(f"\n  {flag}"):]  # the options list, not the usage line
        assert f"(default: {default})" in " ".join(described.split("\n  -")[1].split()), flag


def test_progress_in_a_log_is_a_line_now_and_then(monkeypatch):
    """Not a terminal: no carriage-return bar, but a plain line every LOG_EVERY seconds and the last one;
    work done sooner prints nothing."""
    import io
    import time

    from postergenre.core import progress

    monkeypatch.setattr(progress, "LOG_EVERY", 0.1)
    log = io.StringIO()
    for _ in progress.progress(range(8), desc="folds", unit="fold", file=log):
        time.sleep(0.05)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue() and 2 <= len(lines) <= 6, lines
    assert lines[-1].startswith("folds: 100%") and "8/8" in lines[-1] and len(set(lines)) == len(lines)
    quick = io.StringIO()
    for _ in progress.progress(range(3), desc="quick", file=quick):
        pass
    assert quick.getvalue() == ""
