"""LuNet on MARS at 64x32: the loss x margin grid of Table 1 (Hermans et al. 2017).

Pick a cell with ``--config=configs/lunet_mars_table1.py:<loss>-<margin>``, e.g.
``batch_hard-soft`` (the paper's best), ``batch_hard-0.5``, ``batch_all_nonzero-0.5``,
``triplet_random-0.5``, ``triplet_ohm-0.5``, ``lifted-1.0``, ``lifted_generalized-soft``.
Losses: triplet_random, triplet_ohm, batch_hard, batch_hard_nonzero, batch_all,
batch_all_nonzero, lifted, lifted_generalized; margins: soft, or a float hinge.
Target: Table 1 (mAP / rank-1 on the MARS validation split), e.g. batch hard
soft margin 65.77 / 84.69 (the best cell), batch hard 0.2 65.27 / 84.55, batch
all 0.2 60.48 / 79.99, batch all != 0 0.2 64.31 / 83.37, lifted 3-pos. 0.2
63.87 / 82.86, lifted 1-pos. 0.2 63.68 / 81.73, triplet 0.2 41.71 / 60.78,
triplet + OHM 0.2 61.40 / 82.95 (0.1 and 0.5 collapsed). The paper has no
soft-margin cell for the != 0 and lifted rows ("-"): kreid runs them as
extensions.

As written (Sec. 3.4): "we randomly sample a validation set of 150 persons from
the MARS training set, leaving the remaining 475 persons for training ... LuNet
trained from scratch on images downsampled by a factor of two ... we do not
perform any data augmentation in these experiments"; Eq. (9) schedule, P=32,
K=4. Validation is tracklet-to-tracklet (MARS is "inherently a multi-query
setup", Sec. 3.1). kreid's choices: the held-out split's first tracklet per
identity and camera is the query (the paper does not say how it split its
validation identities), one validation split for every seed
(``validation.split_seed=0``, so that seeds compare on the same people), no
test-time augmentation for the grid.
"""

from kreid.training.config import base_config

LOSSES = ("triplet_random", "triplet_ohm", "batch_hard", "batch_hard_nonzero", "batch_all",
          "batch_all_nonzero", "lifted", "lifted_generalized")


def get_config(cell: str = "batch_hard-soft"):
    loss, _, margin = cell.partition("-")
    if loss not in LOSSES:
        raise ValueError(f"unknown Table 1 loss {loss!r}; choose from {LOSSES}")
    margin = "soft" if margin in ("", "soft") else float(margin)
    c = base_config()
    c.dataset = dict(name="mars", root="data/MARS", options={})
    c.validation = dict(holdout_ids=150, every=2500, protocol="tracklet", split_seed=0)
    c.model.name = "lunet"
    c.image_size = (64, 32)
    c.augment = dict(crop=False, flip=False, erasing_prob=0.0, jitter=0.0, padding=0)
    c.batch.p, c.batch.k = 32, 4
    name = loss.replace("_nonzero", "")
    term = dict(weight=1.0, margin=margin, nonzero_average=loss.endswith("_nonzero"))
    if name.startswith("triplet"):      # random: B = 42 random triplets of the set, as 3B
        term = dict(weight=1.0, margin=margin, mining=name.split("_")[1])
        name = "triplet"
    if name == "lifted":                 # "Lifted 1-pos.": one positive pair per triplet
        term["pairs"] = "triplets"
    c.losses = {name: term}
    c.schedule = dict(kind="exponential", base_lr=1e-3, t0=15000, t1=25000, unit="step")
    c.total_steps = 25000
    c.final_eval = dict(enabled=True, tta="none", protocol="tracklet")
    return c
