"""AM0BH with attributes on Market-1501 (Sabri et al., Eq. 7; the AM0BH_Attr result).

Target: Table 1, AM0BH_Attr on Market-1501: rank-1 94.9 +- 0.13, mAP 86.3 +- 0.10
(Table 3 has no attribute row).

As written: L = L_AM(f_id) + lambda L_AM_Attr(f_attr) + gamma L_BH(f_id) with
lambda = 0.25, gamma = 0.33 (Sec. 4.1); "The 2048 embedding features are
divided into f_attr and f_id. f_attr has size M x Q ... Q is set to 16. The
rest of the embedding features, f_id, is the input to the identity classifier
and triplet loss"; the test-time embedding is f_id (kreid exports f_id only);
Eq. 3 sums the attribute losses over the M attributes. kreid's choices: f_attr
is the *first* M x Q dimensions (the paper does not say which); M = 26: the
binary attributes of Market's 27 (age is 4-class and left out); the attribute
heads' margin 0 and scale 16 (not given). Everything else as
am0bh_market1501.py.
"""

from kreid.training.config import load_config_file


def get_config():
    c = load_config_file("am0bh_market1501.py", relative_to=__file__)
    c.losses = dict(am_softmax=dict(weight=1.0, scale=16.0, margin=0.0),
                    attributes=dict(weight=0.25, slice_dim=16, scale=16.0, margin=0.0),
                    batch_hard=dict(weight=0.33, margin=0.3))
    return c
