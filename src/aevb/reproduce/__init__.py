"""Reproductions of Kingma & Welling (2013), Section 5: AEVB against wake-sleep and Monte Carlo EM.

One module per figure (`figure2` ... `figure5`), each with `run(options) -> list of written paths`;
`common` holds the paper's settings, the data pipeline, the learners and the curve loop; the
baselines they compare AEVB with are `wake_sleep`, `mcem` and its sampler `hmc`.
"""
