"""The Makefile with a DATA folder whose path has spaces, as a user's often does."""
import json
import re
import shlex
import shutil
import subprocess

from postergenre.core.workspace import features_path, split_path
from tests.conftest import ROOT


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", "-C", str(ROOT), *args], capture_output=True, text=True,
                          timeout=300)


def test_a_data_path_with_spaces(sample_dir, tmp_path):
    data = tmp_path / "my posters" / "anime covers"
    shutil.copytree(sample_dir, data)
    split = tmp_path / "split.json"
    result = make("split", f"DATA={data}", f"SPLIT={split}", "MIN_COUNT=3")
    assert result.returncode == 0, result.stderr
    assert json.loads(split.read_text())["dataset"] == "anime_covers"

    for target in ("features", "finetune", "predict", "explain"):  # each runs `postergenre <target>`
        dry = make("-n", target, f"DATA={data}", f"SPLIT={split}", "BACKBONE=efficientnet_lite0",
                   *(["MODEL=models/my net.safetensors"] if target == "explain" else []))
        command = next(line for line in dry.stdout.replace("\\\n", " ").splitlines() if f"postergenre {target}" in line)
        words = shlex.split(command[command.index(f"postergenre {target}"):].split("||")[0])
        assert words[words.index("--data") + 1] == str(data), command
        if target == "predict":  # no MODEL: the data set's best saved model
            assert words[words.index("--dataset") + 1] == "anime_covers"
        if target == "explain":
            assert words[words.index("--model") + 1] == "models/my net.safetensors"
    # the Makefile's file targets follow core.workspace, which names these files everywhere else
    dataset = json.loads(split.read_text())["dataset"]
    for backbone in ("efficientnet_lite0", "timm:test_resnet"):
        dry = make("-n", "features", f"DATA={data}", f"BACKBONE={backbone}").stdout
        assert f"--split {split_path('features', dataset)} " in dry, dry
        assert f"--out {features_path('features', dataset, backbone)} " in dry, dry


def test_a_mistyped_setting_stops_make_in_one_line():
    """Settings with a fixed set of values are checked when make starts, not dropped silently."""
    for setting, allowed in (("THRESHOLDS=per_genre", "global per-genre"), ("TTA=yes", "0 1"),
                             ("ENGINE=ort", "auto torch onnxruntime")):
        result = make("-n", "heads", setting)
        assert result.returncode != 0 and f"{setting} is not one of: {allowed}." in result.stderr, result.stderr
    assert make("-n", "heads", "THRESHOLDS=per-genre").returncode == 0


def test_an_unknown_setting_or_a_path_the_shell_would_read_stops_make_in_one_line():
    """DTA= or IMAGE= would be dropped and the default used (the synthetic sample, DATA's test part); a backtick,
    $ or " in a path would run in the recipe's shell. Both stop make before any recipe."""
    for typo in ("DTA=x", "IMAGE=poster.jpg"):
        result = make("-n", "predict", typo)
        assert result.returncode != 0 and f"unknown setting {typo.split('=')[0]}; the settings are DATA " \
            in result.stderr, result.stderr
        assert "postergenre" not in result.stdout
    for path in ("DATA=a`touch pwned`b", "DATA=$$(touch pwned)", 'IMAGES=a"b', "MODEL=$(shell touch pwned)"):
        result = make("-n", "predict", path)
        assert result.returncode != 0 and f"{path.split('=')[0]} holds " in result.stderr, result.stderr
        assert "a path here may not hold" in result.stderr and not (ROOT / "pwned").exists()


def test_predictions_of_new_posters_and_of_a_test_part_go_to_different_files():
    """Both went to reports/predictions/<name>.csv, so scoring the test part overwrote the new posters' answers;
    without DATA or IMAGES there is nothing to predict, and without DATA the built-in model answers."""
    test_part = make("-n", "predict", "DATA=somewhere/my-set").stdout
    new = make("-n", "predict", "DATA=somewhere/my-set", "IMAGES=new/").stdout
    assert '--out "reports/predictions/my-set-test.csv"' in test_part and "--dataset my-set" in test_part
    assert '--out "reports/predictions/my-set.csv"' in new
    builtin = make("-n", "predict", "IMAGES=new/").stdout
    assert "--dataset" not in builtin and "--model" not in builtin and "predictions/anime.csv" in builtin
    nothing = make("-n", "predict")
    assert nothing.returncode != 0 and "make predict needs IMAGES= (new posters), or DATA=" in nothing.stderr


def test_heads_use_the_backbone_that_features_used(sample_dir, tmp_path):
    """After make features with a BACKBONE, make heads and final for the same DATA need no BACKBONE= again; with
    two feature files, they ask which, listing both."""
    data = tmp_path / "extracted-set"
    shutil.copytree(sample_dir, data)
    lite0, lite2 = (ROOT / "features" / f"extracted-set-{b}.h5" for b in ("efficientnet_lite0", "efficientnet_lite2"))
    try:
        assert "features/extracted-set-resnet50.h5" in make("-n", "heads", f"DATA={data}").stdout
        lite0.touch()  # as make features BACKBONE=efficientnet_lite0 leaves it
        for target in ("heads", "final"):
            dry = make("-n", target, f"DATA={data}").stdout
            assert "--features features/extracted-set-efficientnet_lite0.h5" in dry
        lite2.touch()
        asked = make("-n", "heads", f"DATA={data}")
        assert asked.returncode != 0 and ("has features from efficientnet_lite0 efficientnet_lite2: say which with "
                                          "BACKBONE=efficientnet_lite0") in asked.stderr, asked.stderr
        assert "features/extracted-set-efficientnet_lite2.h5" in make("-n", "heads", f"DATA={data}",
                                                                      "BACKBONE=efficientnet_lite2").stdout
    finally:
        lite0.unlink(missing_ok=True)
        lite2.unlink(missing_ok=True)


def test_make_help_lists_every_setting():
    """The Makefile's header is the settings' one copy: every `NAME ?=` there, and make help prints it."""
    settings = re.findall(r"^([A-Z_]+) \?=", (ROOT / "Makefile").read_text(), re.M)
    listed = {line.split()[0] for line in make("help").stdout.splitlines() if re.match(r"[A-Z_]+ ", line)}
    assert len(settings) > 20 and set(settings) - listed == set(), set(settings) - listed


def test_make_report_with_data_reports_that_data_set_alone_unless_all():
    assert "report --datasets my_set" in make("-n", "report", "DATA=somewhere/my set").stdout
    everything = make("-n", "report", "DATA=somewhere/my set", "ALL=1").stdout
    assert "--datasets" not in everything and "--genre-table" in everything
