"""The variants from the command line (`aevb.cli.variants`, `--arch conv`, `--beta`, `--from aggregate`,
interpolate, traverse) and colour images from a file to RGB grids, end to end through `aevb.cli.main`
(in this process: a subprocess per command spent ~2 s importing torch)."""

import json

import numpy as np
import pytest

import aevb
from aevb_process import aevb_main

pytestmark = pytest.mark.slow  # subprocesses and training: left out of the quick subset

# -- command line -------------------------------------------------------------------------------------


def _aevb(cwd, *args):
    return aevb_main(cwd, list(args))


def test_cli_variants_end_to_end(tmp_path):
    r = _aevb(
        tmp_path,
        "train",
        "--out",
        "run",
        "--epochs",
        "3",
        "--latent-dim",
        "3",
        "--hidden",
        "32",
        "--arch",
        "conv",
        "--channels",
        "8",
        "16",
        "--activation",
        "relu",
        "--beta",
        "0.5",
        "--kl-warmup",
        "1",
        "--free-bits",
        "0.05",
        "--no-progress",
    )
    assert r.returncode == 0, r.stderr
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["model"]["arch"] == "conv" and cfg["model"]["channels"] == [8, 16] and cfg["train"]["beta"] == 0.5
    r = _aevb(tmp_path, "eval", "run", "--k", "20", "--no-progress")
    assert r.returncode == 0, r.stderr
    res = json.loads((tmp_path / "run" / "eval_test.json").read_text())
    assert res["latent_dim"] == 3 and 0 <= res["active_units"] <= 3
    assert res["active_units"] == sum(v > 0.01 for v in res["posterior_mean_variance"])
    assert f"active units {res['active_units']} of 3" in r.stdout
    for args, out in (
        (("sample", "run", "--from", "aggregate", "--components", "3"), "samples.png"),
        (("interpolate", "run", "--from", "2", "--to", "5", "--steps", "6"), "interpolation.png"),
        (("traverse", "run", "--index", "0", "--n", "5"), "traversals.png"),
    ):
        r = _aevb(tmp_path, *args)
        assert r.returncode == 0, r.stderr
        assert (tmp_path / "run" / out).stat().st_size > 0
    assert (tmp_path / "run" / "aggregate-3.safetensors").exists()
    for args, msg, code in (
        (("traverse", "run", "--dims", "7"), "--dims 7 is out of range", 1),
        (("interpolate", "run", "--to", "100000"), "row 100000 is out of range", 1),
        (("train", "--out", "r2", "--prior", "mog", "--free-bits", "1"), "--free-bits needs --prior normal", 1),
        (("train", "--out", "r3", "--arch", "bogus"), "invalid choice", 2),
    ):
        r = _aevb(tmp_path, *args)
        assert r.returncode == code and msg in r.stderr and "Traceback" not in r.stderr, r.stderr


# -- colour images ---------------------------------------------------------------------------------


def test_tile_places_rgb_pixels_exactly():
    from aevb.plots import is_image, tile

    imgs = np.zeros((3, 3, 2, 2), dtype=np.float32)  # (N, C, H, W)
    imgs[1, 0] = 1.0  # image 1 is red
    imgs[2, 2, 1, 1] = 0.5  # image 2 has one half-blue pixel
    m = tile(imgs, ncols=3, pad=1)
    assert m.shape == (4, 10, 3)
    assert (m[1:3, 4:6] == [1.0, 0.0, 0.0]).all()  # image 1
    assert (m[2, 8] == [0.0, 0.0, 0.5]).all() and (m[1, 7] == 0.0).all()  # image 2
    assert (m[0] == 1.0).all()  # white padding
    assert is_image((3, 32, 32)) and is_image((28, 28)) and not is_image((5, 32, 32)) and not is_image((784,))


def test_colour_images_from_a_file_train_a_conv_vae_and_come_out_as_rgb_pngs(tmp_path):
    """A channels-last uint8 (N, 32, 32, 3) .npy of coloured squares: loaded channels first, scaled to
    [0, 1], trained with --arch conv, and written as RGB grids (the inputs' pure colours survive)."""
    import matplotlib.image

    rng = np.random.default_rng(0)
    x = np.zeros((240, 32, 32, 3), dtype=np.uint8)
    for i in range(len(x)):
        r, c = rng.integers(0, 20, 2)
        x[i, r : r + 12, c : c + 12, i % 3] = 255  # a red, green or blue square
    np.save(tmp_path / "squares.npy", x)
    ds = aevb.load_dataset(str(tmp_path / "squares.npy"))
    assert ds.shape == (3, 32, 32) and float(ds.train.max()) == 1.0
    flags = ["--arch", "conv", "--channels", "8", "16", "--hidden", "32", "--latent-dim", "4", "--epochs", "2"]
    r = _aevb(tmp_path, "train", "--dataset", "squares.npy", *flags, "--out", "run", "--no-progress")
    assert r.returncode == 0, r.stderr
    for args in (
        ("sample", "run", "--n", "16", "--out", "s.png"),
        ("reconstruct", "run", "--n", "16", "--out", "r.png"),
    ):
        assert _aevb(tmp_path, *args).returncode == 0
    assert matplotlib.image.imread(tmp_path / "s.png").shape[2] in (3, 4)  # an RGB(A) picture
    rgb = matplotlib.image.imread(tmp_path / "r.png")[..., :3].reshape(-1, 3)  # inputs above reconstructions
    for colour in np.eye(3):  # the 16 test inputs have squares of each pure colour
        assert (np.abs(rgb - colour).max(1) < 0.05).sum() > 50, colour
