"""AM0BH with attributes on Market-1501 (Sabri et al., Eq. 7, Table 3 "Attr" rows).

L = L_AM + lambda * L_Attr + gamma * L_BH with lambda = 0.25, gamma = 0.33; one
2-way angular-margin head per binary Market attribute (the 26 binary of the
27; age is 4-class and left out) on its own Q = 16 slice of the 2048-d feature.
Everything else as am0bh_market1501.py. Target: the paper's Table 3 attribute
row on Market-1501 (not reproduced here: the dataset is not on this machine).
"""

from kreid.training.config import load_config_file


def get_config():
    c = load_config_file("am0bh_market1501.py", relative_to=__file__)
    c.losses = dict(am_softmax=dict(weight=1.0, scale=16.0, margin=0.0),
                    attributes=dict(weight=0.25, slice_dim=16, scale=16.0, margin=0.0),
                    batch_hard=dict(weight=0.33, margin=0.3))
    return c
