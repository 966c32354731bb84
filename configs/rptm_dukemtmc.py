"""RPTM on DukeMTMC-reID (Ghosh et al., Relation Preserving Triplet Mining), person ReID.

Target: Table 3, "RPTM (ResNet-50)*" on DukeMTMC, re-ranked: mAP 87.50, rank-1
92.30 (the ResNet-101's 89.20 / 93.50 needs a backbone kreid does not have). "With the exception of changing the image size to account
for the aspect ratio of input images, no changes were made to the RPTM
network or training parameters" (Sec. 6.2), and Sec. 5.2: "(240,240) for
vehicle reID and (300,150) for person reID": the VeRi-776 recipe
(``rptm_veri776.py``) at 300x150, re-ranked as the paper does on DukeMTMC.
DukeMTMC-reID is not on this machine: the config loads, it has not been run here.
"""

from kreid.training.config import load_config_file


def get_config():
    c = load_config_file("rptm_veri776.py", relative_to=__file__)
    c.dataset = dict(name="dukemtmc", root="data/DukeMTMC-reID", options={})
    c.image_size = (300, 150)
    return c
