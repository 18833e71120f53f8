import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from postergenre.explain.genres import colour_summary
from postergenre.explain.gradcam import grad_cam, overlay
from postergenre.posters.decode import load_image
from postergenre.posters.split import Split
from tests.conftest import run_module


class KeepLeftOfChannel0(nn.Module):
    def forward(self, maps):
        mask = torch.ones_like(maps)
        mask[:, 0, :, maps.shape[-1] // 2:] = 0
        return maps * mask


class LeftHalfDetector(nn.Module):
    """Genre 0 fires on red in the left half of the image, genre 1 on blue anywhere."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1, bias=False)
        with torch.no_grad():
            self.conv.weight.copy_(torch.tensor([[1.0, 0, 0], [0, 0, 1.0]]).view(2, 3, 1, 1))
        self.relu = nn.ReLU()
        self.keep = KeepLeftOfChannel0()  # the last spatial map: the one Grad-CAM must use

    def forward(self, x):
        return self.keep(self.relu(self.conv(x))).mean(dim=(2, 3))


def test_grad_cam_points_at_the_evidence():
    image = torch.zeros(3, 8, 8)
    image[0, :4, :] = 1.0  # red across the top half, both sides
    image[2, 4:, 6:] = 1.0  # blue in the bottom-right corner
    network = LeftHalfDetector()
    red, p_red = grad_cam(network, image, 0)
    assert red.shape == (8, 8) and red.max() == 1.0 and red.min() >= 0
    assert (red[:4, :4] == 1).all() and (red[:, 4:] == 0).all() and (red[4:] == 0).all()  # only the left red counts
    blue, p_blue = grad_cam(network, image, 1)
    assert (blue[4:, 6:] == 1).all() and blue.sum() == 8
    assert p_red == torch.sigmoid(torch.tensor(0.25)).item()  # 16 of 64 pixels red on the left


def test_overlay_keeps_the_poster_size_and_colours_the_heat():
    poster = Image.new("RGB", (60, 90), (128, 128, 128))
    cam = np.zeros((7, 7), dtype=np.float32)
    cam[0, 0] = 1.0
    blended = np.asarray(overlay(poster, cam)).astype(int)
    assert blended.shape == (90, 60, 3)
    assert abs(blended[2, 2] - blended[85, 55]).sum() > 60  # hot corner differs from the cold one


def test_colour_summary_names_what_differs():
    stats = np.array([[0.0, 0.0, 0.2, 0.3]] * 5 + [[0.0, 0.0, 0.4, 0.7]] * 5)
    has = np.array([True] * 5 + [False] * 5)
    assert colour_summary("Horror", has, stats) == ("**Horror** (5 posters): darker (brightness 0.30 vs 0.70), "
                                                    "less saturated (saturation 0.20 vs 0.40).")
    # a model's genre that no poster of this data set has: said plainly, not an IndexError from a NaN hue
    absent = colour_summary("<b>Shoujo/Ai</b>", np.zeros(10, dtype=bool), stats)
    assert absent == "**&lt;b&gt;Shoujo/Ai&lt;/b&gt;** (0 posters): no posters to compare its colours with."


@pytest.mark.slow
def test_explain_commands(trained, sample_dir, sample_split, tmp_path):
    model = next((trained / "models").glob("*.safetensors"))
    poster = sorted((sample_dir / "images").iterdir())[0]
    genre = Split.load(sample_split).genres[0]
    out = tmp_path / "heat.png"
    result = run_module("explain", "poster", "--model", str(model), "--image", str(poster), "--genre", genre,
                        "--out", str(out))
    assert result.stdout.startswith(f"{out}: {genre} 0.")
    assert load_image(out).size == load_image(poster).size

    run_module("explain", "genres", "--model", str(model), "--data", str(sample_dir), "--split", str(sample_split),
               "--out-dir", str(tmp_path / "reports"))
    section = next((tmp_path / "reports" / "explain").glob("*.md")).read_text()
    for genre in Split.load(sample_split).genres:
        assert f"**{genre}** (" in section
    figures = list((tmp_path / "reports" / "explain").glob("*/*.png"))
    assert len(figures) == len(Split.load(sample_split).genres)
