"""The named aevb settings of the image benchmark (anomaly_images.py) and the history of the detector's image
defaults, which the page (anomaly_report.py) reads to name each record's aevb columns by what they ran with.

A record of settings "default" ran `AnomalyDetector(random_state=seed)` as the detector was when the record was
written. When the image defaults change, the records written before keep their meaning through IMAGE_DEFAULTS:
their columns are labelled with the settings that write those earlier defaults out. Settings whose parameters
are what today's defaults choose on the benchmark's 2,000 training images (SAME_AS_DEFAULT) are labelled as the
default (tests/test_anomaly_benchmark.py checks that they are). The tables' defaults have not changed.
"""

from __future__ import annotations

# default: AnomalyDetector(random_state=seed) and nothing else (image_shape "auto" finds 28 x 28 images).
# legacy: the settings of the first image records: the learned Gaussian, 10 epochs, k = 20, one fit.
# learned-one-fit: the defaults but the learned Gaussian and one fit (no concentration refits): the rule
# proposed for images (issue 20).
# robust-refits: the robust Gaussian and 2 refits written out: the image defaults before that rule.
# epochs-120: three times the 40 epochs (2,000 steps) that the data-size rule gave 2,000 images before images had
# their own rule; it is what that rule (about 6,000 steps) gives them now.
# 2000-steps: the 40 epochs written out: the image defaults before the image rule.
AEVB_SETTINGS: dict[str, dict] = {
    "default": {},
    "legacy": {"epochs": 10, "n_samples": 20, "likelihood": "gaussian-learned", "refits": 0},
    "learned-one-fit": {"likelihood": "gaussian-learned", "refits": 0},
    "robust-refits": {"likelihood": "gaussian-robust", "refits": 2},
    "epochs-120": {"epochs": 120},
    "2000-steps": {"epochs": 40},
}

# (when the next image defaults came in, UTC; the settings of the defaults before), newest first:
# - 2026-12-07 20:35: the image data-size rule, about 6,000 steps (aevb.anomaly.fitting.default_size); before it
#   2,000 steps, 40 epochs on 2,000 images
# - 2026-12-06 04:49: likelihood and refits "auto", the learned Gaussian and one fit for images (commit 5ebc06f);
#   before it the robust Gaussian and 2 refits
IMAGE_DEFAULTS: tuple[tuple[str, str], ...] = (
    ("2026-12-07T20:35:00+00:00", "2000-steps"),
    ("2026-12-06T04:49:35+00:00", "robust-refits"),
)

# settings that are today's image defaults on the benchmark's 2,000 training images of 784 pixels
SAME_AS_DEFAULT = ("epochs-120",)


def recorded_settings(record: dict) -> str:
    """The settings' name a record holds; for records from before the names, "legacy" when they set any parameter
    (as the first image records did), else "default"."""
    return record.get("aevb_settings", "legacy" if record.get("aevb") else "default")


def settings_then(record: dict) -> str:
    """The settings an image record's aevb ran with, as named today: a "default" record's defaults of its time
    (IMAGE_DEFAULTS; a record without a time is older than all), "default" for SAME_AS_DEFAULT, else its own."""
    name = recorded_settings(record)
    if name in SAME_AS_DEFAULT:
        return "default"
    if name == "default":
        for since, before in IMAGE_DEFAULTS[::-1]:  # oldest change first: the first one after the record
            if record.get("written", "") < since:
                return before
    return name
