"""benchmarks/anomaly.py's peers and page: every peer of the registry ranks a planted outlier cluster above
the inliers, and the page combines records (latest row wins, common seeds) and counts wins as documented."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import anomaly_peers  # noqa: E402
import anomaly_report  # noqa: E402
import anomaly_settings  # noqa: E402

from aevb.anomaly.fitting import chosen_size, default_size  # noqa: E402

NOW = "2027-01-01T00:00:00+00:00"  # a record's time after every change of the image defaults so far


def _planted(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x_train, x_test, y_test): inliers near a 2-D plane in 6-D; the test part adds a tight cluster of 15
    outliers off the plane and beyond every feature's inlier range (y = 1)."""
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(2, 6))

    def inliers(n):
        return rng.normal(size=(n, 2)) @ w + 0.1 * rng.normal(size=(n, 6))

    off_plane = np.linalg.svd(w)[2][2]  # a unit vector orthogonal to the plane
    centre = 6.0 * np.abs(w).sum(0) + 3.0 * off_plane  # every feature far out, and off the plane
    outliers = centre + 0.1 * rng.normal(size=(15, 6))
    x_test = np.concatenate([inliers(150), outliers])
    return inliers(300), x_test, np.r_[np.zeros(150), np.ones(15)]


SLOW = {"PyOD VAE"}  # 30 epochs of a torch model: 5-17 s on a loaded 2-core machine


@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n for n in anomaly_peers.PEERS]
)
def test_each_peer_ranks_a_planted_cluster_above_the_inliers(name):
    if name in anomaly_peers.NEEDS_PYOD:
        pytest.importorskip("pyod", reason="pyod is not installed (the `bench` extra)")
    x_train, x_test, y_test = _planted()
    score = anomaly_peers.PEERS[name](x_train, 0)(x_test)
    assert score.shape == (len(x_test),)
    assert roc_auc_score(y_test, score) > 0.9


def _row(method, seed, auc):
    return {"method": method, "seed": seed, "auc": auc, "ap": auc / 2, "fit_s": 1.0, "score_s": 0.5}


def test_records_combine_latest_row_wins_on_common_seeds():
    meta = {"n": 1, "d": 1, "anomalies": 0.1}
    old = {"datasets": {"a": {**meta, "rows": [_row("KNN", 0, 0.6), _row("KNN", 1, 0.7)]}}}
    newer = {**meta, "rows": [_row("KNN", 0, 0.9), _row("LOF", 0, 0.5)]}
    new = {"written": "2026-01-01T00:00:00+00:00", "datasets": {"a": newer}}
    merged = anomaly_report.merged_datasets([old, new])
    aucs = {(r["method"], r["seed"]): r["auc"] for r in merged["a"]["rows"]}
    assert aucs == {("KNN", 0): 0.9, ("KNN", 1): 0.7, ("LOF", 0): 0.5}
    methods, seeds, left_out = anomaly_report.common(merged)
    assert (methods, seeds, left_out) == (["KNN", "LOF"], [0], [])  # LOF has only seed 0: KNN's seed 1 is out
    # a method run only on other seeds (confirming seeds, say) is left out instead of emptying the seeds
    merged["a"]["rows"].append(_row("aevb log p(x) (new)", 2, 0.8))
    assert anomaly_report.common(merged) == (["KNN", "LOF"], [0], ["aevb log p(x) (new)"])


def test_aevb_rank_and_wins_within_the_margin():
    aevb = anomaly_report.AEVB
    row = {aevb: {"auc": (0.900, 0)}, "KNN": {"auc": (0.904, 0)}, "LOF": {"auc": (0.950, 0)}}
    h2h = anomaly_report.head_to_head(row, [aevb, "KNN", "LOF"])
    assert h2h[aevb] == (3, False) and h2h["LOF"] == (1, True) and h2h["KNN"] == (2, False)
    row["LOF"]["auc"] = (0.9045, 0)  # now within 0.005 of the first: a win, though third
    h2h = anomaly_report.head_to_head(row, [aevb, "KNN", "LOF"])
    assert h2h[aevb] == (3, True) and h2h["KNN"] == (2, True)


def test_page_means_and_wins_from_two_records(tmp_path):
    aevb = anomaly_report.AEVB
    sets = {
        "1_x": {"n": 10, "d": 2, "anomalies": 0.1, "rows": [_row(aevb, 0, 0.8), _row(aevb, 1, 0.6)]},
        "2_y": {"n": 10, "d": 2, "anomalies": 0.1, "rows": [_row(aevb, 0, 0.9), _row(aevb, 1, 0.9)]},
    }
    peers = {
        "1_x": {"n": 10, "d": 2, "anomalies": 0.1, "rows": [_row("KNN", 0, 0.75), _row("KNN", 1, 0.75)]},
        "2_y": {"n": 10, "d": 2, "anomalies": 0.1, "rows": [_row("KNN", 0, 0.5), _row("KNN", 1, 0.8)]},
    }
    for name, datasets in (("_a", sets), ("_b", peers)):
        rec = {"command": f"run {name}", "versions": {"aevb": "0"}, "datasets": datasets}
        (tmp_path / f"anomaly_tabular{name}.json").write_text(json.dumps(rec))
    anomaly_report.report(tmp_path)
    page = (tmp_path / "anomaly.md").read_text()
    assert "Seeds: 0, 1 " in page and "`run _a`" in page and "`run _b`" in page
    # aevb: 1_x mean 0.70 < KNN 0.75 (rank 2, not within 0.005); 2_y 0.90 > 0.65: one win of two
    assert "| 1_x | 10 | 2 | 10.0% | 0.700 ± 0.100 | **0.750 ± 0.000** | 2 of 2 |" in page
    assert f"| {aevb} | 0.800 | 0.400 | 1.50 | 1 of 2 | 1.00 | 0.50 |" in page
    assert "| KNN | 0.700 | 0.350 | 1.50 | 1 of 2 | 1.00 | 0.50 |" in page


def test_the_size_columns_are_those_of_the_seeds_shown():
    # an image set's split is drawn for each seed: seed 3's record (the latest) has another anomaly share
    aevb = anomaly_report.AEVB
    first = {"datasets": {"digit 0": {"n": 2000, "d": 784, "anomalies": 0.1, "rows": [_row(aevb, 0, 0.8)]}}}
    later = {"n": 2000, "d": 784, "anomalies": 0.117, "rows": [_row(aevb, 3, 0.7)]}
    merged = anomaly_report.merged_datasets(
        [first, {"written": "2026-01-01T00:00:00+00:00", "datasets": {"digit 0": later}}]
    )
    assert "| digit 0 | 2000 | 784 | 10.0% | **0.800** | 1 of 1 (win) |" in anomaly_report.tables(merged, only=[0])
    assert "| digit 0 | 2000 | 784 | 11.7% | **0.700** | 1 of 1 (win) |" in anomaly_report.tables(merged, only=[3])
    both = anomaly_report.tables(merged)  # both seeds: the range of their shares
    assert "| digit 0 | 2000 | 784 | 10.0%–11.7% | **0.750 ± 0.050** | 1 of 1 (win) |" in both


def test_tables_on_chosen_seeds_only():
    aevb = anomaly_report.AEVB
    sets = {"1_x": {"n": 10, "d": 2, "anomalies": 0.1, "rows": [_row(aevb, 0, 0.8), _row(aevb, 1, 0.6)]}}
    lines = anomaly_report.tables(sets, only=[1])
    assert lines[0].startswith("Seeds: 1 ")
    assert "| 1_x | 10 | 2 | 10.0% | **0.600** | 1 of 1 (win) |" in lines


def test_aevb_columns_and_records_name_their_settings(tmp_path):
    assert anomaly_report.aevb_label("complexity") == "aevb complexity μ=0.1"  # the detector's default weight
    assert anomaly_report.aevb_label("log-likelihood", "legacy") == "aevb log p(x) (legacy)"
    meta = {"n": 10, "d": 2, "anomalies": 0.1}
    legacy = {"aevb": {"epochs": 10}, "aevb_settings": "legacy", "command": "run legacy", "detectors": ["aevb"]}
    legacy["datasets"] = {"digit 0": {**meta, "rows": [_row("aevb log p(x) (legacy)", 0, 0.6)]}}
    default = {"aevb": {}, "aevb_settings": "default", "command": "run default", "detectors": ["aevb", "KNN"]}
    default["written"] = NOW  # after the last change of the image defaults: the defaults of today
    default["datasets"] = {"digit 0": {**meta, "rows": [_row(anomaly_report.AEVB, 0, 0.8), _row("KNN", 0, 0.7)]}}
    for name, rec in (("", legacy), ("_new", default)):
        (tmp_path / f"anomaly_mnist{name}.json").write_text(json.dumps(rec))
    anomaly_report.report(tmp_path)
    page = (tmp_path / "anomaly.md").read_text()
    assert "aevb settings legacy: `AnomalyDetector(random_state=seed, epochs=10)`" in page
    assert "aevb settings default: `AnomalyDetector(random_state=seed)`" in page
    # both columns, each under its own name; the head-to-head is the default settings' column
    assert f"| {anomaly_report.AEVB} | aevb log p(x) (legacy) | KNN | {anomaly_report.AEVB} rank |" in page


def test_complexity_columns_name_their_weight_and_the_default_score_is_the_head_column():
    label = anomaly_report.aevb_label
    assert label("complexity", "legacy", 0.25) == "aevb complexity μ=0.25 (legacy)"
    assert label("complexity", complexity_weight=1.0) == "aevb complexity μ=1"
    # the records from before the weight named Serra's score (mu = 1) "aevb complexity": the page renames them
    old = {"n": 10, "d": 2, "anomalies": 0.1}
    old["rows"] = [_row("aevb complexity", 0, 0.6), _row("aevb complexity (legacy)", 0, 0.5), _row("KNN", 0, 0.7)]
    new = {**old, "rows": [_row(label("complexity"), 0, 0.9), _row(anomaly_report.AEVB, 0, 0.65)]}
    merged = anomaly_report.merged_datasets(
        [{"datasets": {"digit 1": old}}, {"written": "1", "datasets": {"digit 1": new}}]
    )
    methods = {r["method"] for r in merged["digit 1"]["rows"]}
    assert methods == {
        "aevb complexity μ=1",
        "aevb complexity μ=1 (legacy)",
        "KNN",
        "aevb complexity μ=0.1",
        "aevb log p(x)",
    }
    page = "\n".join(anomaly_report.tables(merged))
    # AnomalyDetector()'s score on images is ranked against the peers: first of the two (0.9 against KNN's 0.7)
    assert "| aevb complexity μ=0.1 rank |" in page and page.count(" rank |") == 1
    assert (
        "| aevb complexity μ=0.1 | aevb log p(x) | aevb complexity μ=1 | aevb complexity μ=1 (legacy) | KNN |" in page
    )
    assert "| **0.900** | 0.650 | 0.600 | 0.500 | 0.700 | 1 of 2 (win) |" in page
    # a part without it (a table) ranks log p(x)
    table = anomaly_report.tables({"1_x": {**old, "rows": [_row(anomaly_report.AEVB, 0, 0.8), _row("KNN", 0, 0.7)]}})
    assert "| aevb log p(x) rank |" in "\n".join(table)
    # the records with the combined score, the image default since, rank it
    combined = {**old, "rows": [*new["rows"], _row(label("combined"), 0, 0.95)]}
    page = "\n".join(anomaly_report.tables({"digit 1": combined}))
    assert "| aevb combined rank |" in page and page.count(" rank |") == 1
    assert "| aevb combined | aevb complexity μ=0.1 | aevb log p(x) |" in page


def test_the_pixel_background_is_independent_gaussians_with_the_training_moments_and_the_floor():
    import anomaly_pixel_background as pb
    import torch

    rng = np.random.default_rng(0)
    train = np.c_[rng.normal(2.0, 3.0, 500), np.zeros(500), rng.uniform(0, 1, 500)]  # the middle column constant
    rows = rng.normal(0.0, 1.0, (7, 3))
    got = pb.pixel_log_density(train, rows, logvar_min=-4.0)
    sd = torch.tensor([train[:, 0].std(), np.exp(-2.0), train[:, 2].std()])  # the floor: sigma = exp(-4 / 2)
    normal = torch.distributions.Normal(torch.tensor(train.mean(0)), sd)
    np.testing.assert_allclose(got, normal.log_prob(torch.tensor(rows)).sum(1).numpy(), rtol=1e-12)


def test_the_tempered_complexity_adds_mu_times_the_png_code_length_in_nats():
    import zlib

    import anomaly_pixel_background as pb

    rng = np.random.default_rng(1)
    rows = np.r_[np.zeros((1, 64)), rng.uniform(0, 1, (2, 64))]  # a blank 8 x 8 image and two noisy ones
    log_p = np.array([-3.0, 5.0, 0.5])
    scanlines = [np.c_[np.zeros((8, 1)), np.rint(r.reshape(8, 8) * 255)].astype(np.uint8).tobytes() for r in rows]
    bits = np.array([8.0 * len(zlib.compress(b, 9)) for b in scanlines])  # PNG filter 0, zlib level 9
    for mu in (0.0, 0.1, 1.0):
        np.testing.assert_allclose(pb.tempered_complexity(log_p, rows, mu, (8, 8)), log_p + mu * bits * np.log(2))
    assert bits[0] < bits[1] and bits[0] < bits[2]  # the blank image is the simplest


def test_the_default_on_all_its_seeds_beside_the_methods_run_on_them(tmp_path):
    # the default ran on seeds 0 and 1, KNN too, LOF on seed 0 only: the page's first tables are seed 0 (every
    # method), then the default's own two seeds with KNN, LOF named as left out
    head = anomaly_report.AEVB_SCORES["combined"]
    meta = {"n": 10, "d": 2, "anomalies": 0.1}
    rows = [_row(head, 0, 0.8), _row(head, 1, 0.6), _row("KNN", 0, 0.7), _row("KNN", 1, 0.9), _row("LOF", 0, 0.5)]
    merged = {"digit 0": {**meta, "rows": rows}}
    assert anomaly_report.head_seeds(merged) == ([head, "KNN"], [0, 1], ["LOF"])
    rec = {"command": "run", "written": NOW, "detectors": ["aevb", "KNN", "LOF"], "datasets": merged}
    (tmp_path / "anomaly_mnist.json").write_text(json.dumps(rec))
    anomaly_report.report(tmp_path)
    page = (tmp_path / "anomaly.md").read_text()
    assert "| digit 0 | 10 | 2 | 10.0% | **0.800** | 0.700 | 0.500 | 1 of 3 (win) |" in page
    wide = page[page.index(f"### {head} on all its seeds") :]
    assert "Seeds: 0, 1 (those every method below was run on, on every set). Left out" in wide
    assert "| digit 0 | 10 | 2 | 10.0% | 0.700 ± 0.100 | **0.800 ± 0.100** | 2 of 2 |" in wide
    assert "#### Summary" in wide
    # where the default has no more seeds than every method shares, there is no second view
    fewer = {"digit 0": {**meta, "rows": rows[:1] + rows[2:]}}  # the default on seed 0 only
    (tmp_path / "anomaly_mnist.json").write_text(json.dumps({**rec, "datasets": fewer}))
    anomaly_report.report(tmp_path)
    assert "on all its seeds" not in (tmp_path / "anomaly.md").read_text()


def test_each_record_of_the_image_defaults_is_named_by_the_settings_it_ran_with(tmp_path):
    """A "default" image record is labelled with the settings of the defaults of its time, a record of settings
    that are today's defaults as the default; the tables' records keep their labels; the record list says so."""
    then = anomaly_settings.settings_then
    (last, before), (first, earliest) = anomaly_settings.IMAGE_DEFAULTS
    assert then({"aevb_settings": "default", "written": NOW}) == "default"
    assert then({"aevb_settings": "default", "written": "2026-12-07T18:14:48+00:00"}) == before == "2000-steps"
    assert then({"aevb_settings": "default", "written": "2026-12-06T03:16:54+00:00"}) == earliest == "robust-refits"
    assert then({"aevb_settings": "default"}) == "robust-refits"  # no time: older than every change
    assert then({"aevb_settings": "epochs-120", "written": "2026-12-07T18:23:59+00:00"}) == "default"
    assert then({"aevb_settings": "learned-one-fit", "written": "2026-12-06T04:33:50+00:00"}) == "learned-one-fit"
    assert then({"aevb": {"epochs": 10}}) == "legacy"  # before the records named their settings
    head = anomaly_report.AEVB_SCORES["combined"]
    meta = {"n": 10, "d": 2, "anomalies": 0.1}
    old = {"command": "run old", "written": "2026-12-07T18:00:00+00:00", "aevb_settings": "default", "aevb": {}}
    old["datasets"] = {"digit 0": {**meta, "rows": [_row(head, 0, 0.8), _row("KNN", 0, 0.7)]}}
    new = {"command": "run new", "written": "2026-12-07T18:30:00+00:00", "aevb_settings": "epochs-120"}
    new["aevb"] = {"epochs": 120}
    new["datasets"] = {"digit 0": {**meta, "rows": [_row(f"{head} (epochs-120)", 0, 0.9)]}}
    assert {r["method"] for r in anomaly_report.named_today(old)["datasets"]["digit 0"]["rows"]} == {
        f"{head} (2000-steps)",
        "KNN",
    }
    for name, rec in (("_old", old), ("_new", new)):
        (tmp_path / f"anomaly_mnist{name}.json").write_text(json.dumps(rec))
        (tmp_path / f"anomaly_tabular{name}.json").write_text(
            json.dumps({**rec, "datasets": {"1_x": rec["datasets"]["digit 0"]}})
        )
    anomaly_report.report(tmp_path)
    page = (tmp_path / "anomaly.md").read_text()
    images = page[page.index("## MNIST one-class-out") :]
    tables = page[: page.index("## MNIST one-class-out")]
    assert (
        "aevb settings default of its time, written out as 2000-steps: `AnomalyDetector(random_state=seed, epochs=40)`"
        in images
    )
    assert (
        "aevb settings epochs-120, today's default on these images: `AnomalyDetector(random_state=seed, epochs=120)`"
        in images
    )
    assert f"| {head} | {head} (2000-steps) | KNN | {head} rank |" in images
    assert "| digit 0 | 10 | 2 | 10.0% | **0.900** | 0.800 | 0.700 | 1 of 2 (win) |" in images
    assert f"| {head} | {head} (epochs-120) | KNN | {head} rank |" in tables  # the tables' defaults did not change


def test_the_settings_named_as_the_defaults_are_what_the_detector_chooses_on_the_benchmarks_images():
    """SAME_AS_DEFAULT's parameters, on 2,000 training images of 784 pixels, are the size the detector's rule
    gives them, and the earlier defaults' settings are what the rule gave before images had their own (the
    table rule): so the relabelled columns hold what their names say."""
    settings = anomaly_settings.AEVB_SETTINGS
    rule = default_size(2000, 784, images=True)
    for name in anomaly_settings.SAME_AS_DEFAULT:
        assert chosen_size(2000, 784, settings[name], images=True) == rule
    assert chosen_size(2000, 784, settings["2000-steps"], images=True) == default_size(2000, 784)
    assert settings["2000-steps"] != {} and rule != default_size(2000, 784)
