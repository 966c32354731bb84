"""The reproduction study's paper tables, as data: each :class:`Study` is one paper
table (its base config, arms and claims); :data:`STUDIES` holds them by name.

Every study shares one CPU-scale recipe (:func:`base_config`): the ImageNet
MobileNetV2 of issue 13 (offline weights, ``make weights``) at 128x64 on
CUHK03-labeled, P=16 K=4, Adam 3.5e-4 with Eq. (9) decay over the second half,
:data:`DEFAULT_STEPS` steps per run (about 2.5 minutes on 2 cores), seeds 0,
1 and 2 (``bin/reproduce.py``'s default: #29's rule needs three). Why not LuNet, as Hermans et al.'s Table 1 does ("LuNet trained from
scratch on images downsampled by a factor of two"): measured here, LuNet at
64x32 from scratch after 300 steps of soft-margin batch hard scores mAP 1.6% /
rank-1 0.0% on the 150 held-out identities (chance: about 1.5%) and 3.0% /
2.7% SGS on the test split, so no loss could be told from another at this
budget; LuNet needs thousands of steps (BENCHMARKS.md: 800 steps give 11.7%
SGS rank-1). A pretrained backbone reaches a measurable accuracy in 300
steps, and within a study every arm has the same backbone, input, steps and
seeds. ``smoke=True`` runs every study in miniature on the synthetic set with
a randomly initialised MobileNetV2 (the test of this package, no download).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable

DEFAULT_STEPS = 300
TTA_ORDER = ("none", "center", "center_flip", "five", "five_flip")

@dataclasses.dataclass(frozen=True)
class Arm:
    name: str
    apply: Callable = lambda c: None         # mutates the study's base config
    paper: str = ""                          # the paper's number for this row
    trained: bool = True                     # False: a row an analysis of a trained arm adds
    reuse: tuple[str, str] = ()              # (study, arm): score that arm's trained model


@dataclasses.dataclass(frozen=True)
class Claim:
    better: str
    worse: str
    text: str                                # what the paper says
    metric: str = "mAP"
    kind: str = "paper"                      # "kreid": kreid's own question, not counted
    needs_classifier: bool = False           # both arms' classifiers must have trained
    beyond_budget: str = ""                  # why this budget cannot decide it (#29)


@dataclasses.dataclass(frozen=True)
class Study:
    name: str
    source: str                              # paper and table
    setup: str                               # what every arm shares
    arms: tuple[Arm, ...]
    claims: tuple[Claim, ...]
    split: str = "test"                      # "val": the held-out training ids; "test"
    metric: str = "euclidean"                # distance used for scoring
    augment: bool = True
    analyses: tuple[str, ...] = ()           # "tta", "distractors", "xqda"
    data: str = "cuhk03"                     # "cuhk03" | "viper" (attributes)
    embedding_dim: int = 128
    notes: str = ""


# ------------------------------------------------------------------ configs
def base_config(study: Study, data_root: str, steps: int, smoke: bool, out_dir: str):
    """The config every arm of ``study`` starts from."""
    from kreid.training.config import base_config as kreid_base

    c = kreid_base()
    if smoke:
        c.dataset = dict(name="synthetic", root=os.path.join(out_dir, "synthetic"), options={})
        c.batch.p, c.batch.k = 16, 2          # N-tuplets need N = 16 of the 24 training ids
    elif study.data == "viper":
        c.dataset = dict(name="viper", root=os.path.join(data_root, "peta", "VIPeR"), options={})
        c.batch.p, c.batch.k = 32, 2          # VIPeR has two images per identity
    else:
        c.dataset = dict(name="cuhk03", root=os.path.join(data_root, "cuhk03_labeled"),
                         options={})
        c.batch.p, c.batch.k = 16, 4
    c.model.name = "mobilenet_v2"            # see the module docstring for why not LuNet
    c.model.kwargs = {} if smoke else dict(weights="mobilenet_v2_imagenet")
    c.model.embedding_dim = study.embedding_dim
    c.image_size = (128, 64)
    c.augment = dict(crop=study.augment, flip=study.augment, erasing_prob=0.0, jitter=0.0,
                     padding=0)
    c.schedule = dict(kind="exponential", base_lr=3.5e-4, t0=steps // 2, t1=steps,
                      unit="step")
    c.total_steps = steps
    c.checkpoint_every = max(1, steps // 4)
    c.log_every = max(1, min(50, steps))
    c.histogram_every = 10 ** 9
    c.final_eval.enabled = False             # scored by :func:`score_run`
    if study.split == "val":                 # one validation split for every seed
        c.validation = dict(holdout_ids=6 if smoke else 150, every=0, protocol="market",
                            split_seed=0)
    c.rptm.cache_dir = os.path.join(out_dir, "rptm_cache")
    c.ohm = dict(every=max(1, steps // 3), identities=20 if smoke else 100)
    return c


# #29: 300 steps of 21 sampled triplets barely train the vanilla triplet loss, whatever
# the mining (benchmarks/ohm_probe.py: 3.5-5.3 validation mAP, chance 1.5, batch hard 15.6)
_TRIPLETS_300 = "the triplet arms barely learn in 300 steps, benchmarks/ohm_probe.py"
# #29: under the study's one schedule the MPN arms' stage 3 (the only one with Tri.) runs
# at 0.1-1.6% of the base rate and the network trains 180 of 300 steps: measured,
# MPN+Tri.+Cls. equals MPN+Cls. to 0.1 mAP on each of three seeds
_MPN_300 = ("the MPN arms' network trains 180 of 300 steps, stage 3 at 0.1-1.6% of the "
            "base rate, docs/REPRODUCTION.md")


def _losses(**terms):
    def apply(c):
        c.losses = terms
    return apply


def _three_stage(final: dict):
    """Zhang et al.'s schedule at this budget: 60% classification + PN-tuplet, 20% the
    meta-learner alone on the frozen network, 20% joint fine-tuning with ``final``. The
    rate is the one schedule every arm of the study has (#29: constant to half the steps,
    then Eq. 9's decay), continued across the stages (``offset``), so that the MPN arms
    see the others' rates. They still differ in more than their losses: each stage
    starts a fresh Adam, stage 2 freezes the network, and stage 3 runs at 0.1-1.6% of
    the base rate, so at 300 steps the network trains 180 (``_MPN_300``)."""
    def apply(c):
        steps = int(c.total_steps)
        s1, s2 = int(0.6 * steps), int(0.2 * steps)
        s3 = steps - s1 - s2
        cls = dict(weight=1.0, label_smoothing=0.0)
        c.stages = [
            dict(steps=s1, losses=dict(bnneck_ce=cls, prototypical=dict(weight=1.0)),
                 schedule=dict(offset=0)),
            dict(steps=s2, freeze_model=True, losses=dict(mpn=dict(weight=1.0), bnneck_ce=cls),
                 schedule=dict(offset=s1)),
            dict(steps=s3, losses=dict(final, bnneck_ce=cls), schedule=dict(offset=s1 + s2)),
        ]
        c.losses = c.stages[0]["losses"]
    return apply


def _image_size(size):
    def apply(c):
        c.image_size = size
    return apply


def _rptm(mode: str, positive: str = "rptm"):
    """RPTM with ``mode``'s threshold; ``positive="hardest"``: the same sampler, anchors
    and batches with each anchor's hardest positive (batch hard, #29's control)."""
    def apply(c):
        c.losses = dict(rptm=dict(weight=1.0, margin=1.0, positive=positive),
                        bnneck_ce=_CLS)
        c.rptm.mode = mode
    return apply


_CLS = dict(weight=1.0, label_smoothing=0.0)
_AM0 = dict(weight=1.0, scale=16.0, margin=0.0)              # Sabri's normalised softmax
# Zhang's "Tri." (#29): the unified-form soft-margin triplet with a learnable tau, cosine,
# every triplet of the batch (Table 2's best Tri. + Cls. row)
_TRI = dict(weight=1.0)

STUDIES: dict[str, Study] = {s.name: s for s in (
    Study(
        "hermans_table1", "Hermans et al. 2017, Table 1 (LuNet, MARS validation; paper "
        "column: mAP / rank-1)",
        "no augmentation; scored on 150 held-out training identities (market rules)",
        arms=(
            Arm("BH soft", _losses(batch_hard=dict(weight=1.0, margin="soft")), "65.77 / 84.69"),
            Arm("BH 0.2", _losses(batch_hard=dict(weight=1.0, margin=0.2)), "65.27 / 84.55"),
            Arm("BA 0.2", _losses(batch_all=dict(weight=1.0, margin=0.2)), "60.48 / 79.99"),
            Arm("BA!=0 0.2", _losses(batch_all=dict(weight=1.0, margin=0.2,
                                                    nonzero_average=True)), "64.31 / 83.37"),
            Arm("L 3-pos 0.2", _losses(lifted_generalized=dict(weight=1.0, margin=0.2)),
                "63.87 / 82.86"),
            Arm("L 1-pos 0.2", _losses(lifted=dict(weight=1.0, margin=0.2, pairs="triplets")),
                "63.68 / 81.73"),
            Arm("Trip. 0.2", _losses(triplet=dict(weight=1.0, margin=0.2, mining="random")),
                "41.71 / 60.78"),
            Arm("Trip.+OHM 0.2", _losses(triplet=dict(weight=1.0, margin=0.2, mining="ohm")),
                "61.40 / 82.95 (0.1 and 0.5 collapsed)"),
        ),
        claims=(
            Claim("BH soft", "BH 0.2", "\"The best score was obtained by the soft-margin "
                  "variation of the batch hard loss\""),
            Claim("BH 0.2", "BA 0.2", "\"batch hard ... consistently outperforms the batch "
                  "all variant\""),
            Claim("BA!=0 0.2", "BA 0.2", "averaging the non-zero terms \"performs much better "
                  "in the batch all case\""),
            Claim("L 3-pos 0.2", "L 1-pos 0.2", "the generalisation to multiple positives "
                  "\"improves upon\" the lifted loss"),
            Claim("BA 0.2", "Trip. 0.2", "\"the vanilla triplet loss with randomly sampled "
                  "triplets performs poorly\"", beyond_budget=_TRIPLETS_300),
            Claim("Trip.+OHM 0.2", "Trip. 0.2", "offline hard mining \"sometimes increase[s] "
                  "dramatically\" the scores", beyond_budget=_TRIPLETS_300),
            Claim("BH 0.2", "Trip.+OHM 0.2", "the re-formulations \"perform similarly to or "
                  "better than the best OHM run\"", beyond_budget=_TRIPLETS_300),
        ),
        split="val", augment=False),
    Study(
        "hermans_size_tta", "Hermans et al. 2017, Tables 3 and 4 (input size, test-time "
        "augmentation; paper column: mAP / rank-1, Market-1501)", "soft-margin batch hard, crop + flip training; CUHK03 test split",
        arms=(Arm("128x64", paper="60.71 / 81.38 (Table 3, Market, 5 crops + flip)"),
              Arm("64x32", _image_size((64, 32)), "57.18 / 78.21"),
              Arm("128x64 none", paper="55.61 / 76.72 (Table 4)", trained=False),
              Arm("128x64 center", paper="57.08 / 77.94", trained=False),
              Arm("128x64 center_flip", paper="59.31 / 79.78", trained=False),
              Arm("128x64 five", paper="59.00 / 79.42", trained=False),
              Arm("128x64 five_flip", paper="60.71 / 81.38", trained=False)),
        claims=(Claim("128x64", "64x32", "for the pretrained TriNet at 64x32 \"the "
                      "performance drops rapidly\" (-15.1 mAP; LuNet from scratch: -3.5)"),
                Claim("128x64 five_flip", "128x64 center", "TTA: \"we gain about 3% mAP\""),
                Claim("64x32 five_flip", "64x32 center", "(kreid's extension: the same at "
                      "64x32)", kind="kreid"),
                Claim("128x64 five_flip", "128x64 none", "TTA against the whole image scaled "
                      "(+5.1 mAP for LuNet)"),
                Claim("128x64 center_flip", "128x64 center", "flipping alone helps (+2.2 mAP)")),
        analyses=("tta",)),
    Study(
        "hermans_distractors", "Hermans et al. 2017, Table 5 / Fig. 2 (distractors, Market-1501 + 500k)",
        "soft-margin batch hard; the CUHK03 test gallery grown with the images of the "
        "five PETA sets as kreid's loaders read them (other people: distractors)",
        arms=(Arm("BH soft", paper="LuNet on Market + 500k: mAP 60.71 -> 44.26, rank-1 "
                  "81.38 -> 69.74", reuse=("hermans_size_tta", "128x64")),),
        claims=(), analyses=("distractors",),
        notes="Claim: \"all models seem to suffer under the increasing gallery set in a "
              "similar manner, albeit none of them fails badly\"."),
    Study(
        "hermans_ide_xqda", "Hermans et al. 2017, Table 2 baseline IDE (R) + ML (paper "
        "column: mAP / rank-1, Market-1501, with TTA)",
        "IDE = identity classification only (softmax, no triplet term); ML = XQDA fitted "
        "on the training embeddings; CUHK03 test split",
        arms=(Arm("IDE", _losses(bnneck_ce=dict(weight=1.0, label_smoothing=0.0, bn=False))),
              Arm("IDE xqda", paper="IDE (R) + ML ours: 58.06 / 78.50 (Market, TTA)",
                  trained=False),
              Arm("BH soft", paper="LuNet: 60.71 / 81.38", reuse=("hermans_size_tta", "128x64"))),
        claims=(Claim("BH soft", "IDE xqda", "\"the large gap between the identification-"
                      "based model and our TriNet clearly demonstrates the advantages of using "
                      "a triplet loss\" (LuNet: +2.7 mAP)", needs_classifier=True),
                Claim("IDE xqda", "IDE", "the metric-learning step on IDE features",
                      kind="kreid")),
        analyses=("xqda",)),
    Study(
        "sabri_table3", "Sabri et al., Table 3 (loss ablation; paper column: rank-1 / mAP, "
        "Market-1501)",
        "AM = angular margin softmax s=16; BH gamma 0.43 hinge 0.3 on the raw embedding; "
        "cosine distance at test time (as the paper); CUHK03 test split; paper column: "
        "Market rank-1 / mAP",
        arms=(
            Arm("AM0", _losses(am_softmax=_AM0),
                "92.86 / 83.67"),
            Arm("AM", _losses(am_softmax=dict(weight=1.0, scale=16.0, margin=0.5)),
                "94.16 / 84.54"),
            Arm("BH", _losses(batch_hard=dict(weight=1.0, margin=0.3)), "84.74 / 67.40"),
            Arm("AM0BH", _losses(am_softmax=_AM0,
                                 batch_hard=dict(weight=0.43, margin=0.3)), "94.64 / 85.90"),
            Arm("AM0BH1", _losses(am_softmax=_AM0,
                                  batch_hard=dict(weight=0.43, margin=0.3,
                                                  features="normalized")), "94.28 / 84.52"),
            Arm("AM0BHsp", _losses(am_softmax=_AM0,
                                   batch_hard=dict(weight=0.43, margin="soft")),
                "94.42 / 85.76"),
        ),
        claims=(Claim("AM0BH", "AM0", "\"improvement on almost all metrics compared to AM0 "
                      "or BH individually\"", needs_classifier=True),
                Claim("AM0BH", "BH", "(the same, against BH)"),
                Claim("AM", "AM0", "the margin helps the classifier alone (all three sets)",
                      needs_classifier=True),
                Claim("AM0BH", "AM0BH1", "\"a decreased performance\" with feature "
                      "normalisation")),
        metric="cosine"),
    Study(
        "sabri_attributes", "Sabri et al., Table 1 (AM0BH vs AM0BH_Attr)",
        "VIPeR with PETA's attributes (the binary ones; Q=16 dims each, lambda 0.25, "
        "gamma 0.33, Eq. 7's values, for both arms; Table 3's AM0BH has 0.43); the paper's "
        "2048-d embedding, so that M x Q attribute dimensions "
        "leave room for f_id; P=32 K=2; cosine distance",
        arms=(
            Arm("AM0BH", _losses(am_softmax=_AM0,
                                 batch_hard=dict(weight=0.33, margin=0.3))),
            Arm("AM0BH_Attr", _losses(am_softmax=_AM0,
                                      attributes=dict(weight=0.25, slice_dim=16),
                                      batch_hard=dict(weight=0.33, margin=0.3)),
                "Market 94.9 / 86.3 against 94.6 / 85.9"),
        ),
        claims=(Claim("AM0BH_Attr", "AM0BH", "attributes improve \"by 0.3% and 0.4% for "
                      "rank-1 and mAP\" (Market)", needs_classifier=True),),
        metric="cosine", data="viper", embedding_dim=2048),
    Study(
        "zhang_unified", "Zhang et al., Tables 2-3 (unified classification losses)",
        "Cls. = softmax on a BN-neck; Tri. = unified soft-margin triplet (every triplet, "
        "cosine, learnable tau); N = 16, "
        "learnable temperatures; MPN rows use the three-stage schedule (60/20/20% of the "
        "steps); CUHK03 test split; paper column: CUHK03(L) rank-1 / mAP",
        arms=(
            Arm("Cls.", _losses(bnneck_ce=_CLS), "67.2 / 63.6"),
            Arm("Tri.+Cls.", _losses(unified_triplet=_TRI, bnneck_ce=_CLS), "81.8 / 78.2"),
            Arm("P2S+Cls.", _losses(point_to_set=dict(weight=1.0), bnneck_ce=_CLS),
                "81.1 / 77.8"),
            Arm("N-tuplet+Cls.", _losses(ntuplet=dict(weight=1.0, n=16), bnneck_ce=_CLS),
                "82.2 / 79.1"),
            Arm("PN+Cls.", _losses(prototypical=dict(weight=1.0), bnneck_ce=_CLS),
                "82.9 / 79.6"),
            Arm("MPN+Cls.", _three_stage(dict(mpn=dict(weight=1.0))), "84.4 / 80.3"),
            Arm("MPN+Tri.+Cls.", _three_stage(dict(mpn=dict(weight=1.0), unified_triplet=_TRI)),
                "84.6 / 80.8"),
        ),
        claims=(Claim("MPN+Tri.+Cls.", "Tri.+Cls.", "\"MPN-tuplet+Tri.+Cls. achieves the best "
                      "performance\" (+2.6 mAP over the baseline)", beyond_budget=_MPN_300),
                Claim("Tri.+Cls.", "Cls.", "the two terms jointly beat classification alone",
                      needs_classifier=True),
                Claim("MPN+Cls.", "PN+Cls.", "meta prototypes beat plain ones (+0.7 mAP)",
                      beyond_budget=_MPN_300),
                Claim("N-tuplet+Cls.", "Cls.", "the N-tuplet term adds to classification "
                      "(CUHK03(L): +15.5 mAP, Tables 2-3)", needs_classifier=True)),
        ),
    Study(
        "ghosh_rptm", "Ghosh et al., Table 5b (RPTM thresholds; paper column: mAP / "
        "rank-1, VeRi-776); batch hard added",
        "hinge 1.0 triplet on the raw embedding + softmax on a BN-neck; RPTM positives "
        "from the GMS relational matrix of the training set (ORB 10,000, 224x224); every "
        "arm on the same RPTM batches (P x K anchors + their positives), BH taking each "
        "anchor's hardest positive instead",
        arms=(
            Arm("BH", _rptm("mean", positive="hardest")),
            Arm("RPTM mean", _rptm("mean"), "VeRi 88.0 / 97.3 (mAP / rank-1, Table 5b)"),
            Arm("RPTM min", _rptm("min"), "86.3 / 95.9"),
            Arm("RPTM max", _rptm("max"), "82.2 / 95.6"),
        ),
        claims=(Claim("RPTM mean", "RPTM min", "Table 5b: mean beats min (+1.7 mAP, VeRi)"),
                Claim("RPTM mean", "RPTM max", "Table 5b: mean beats max (+5.8 mAP, VeRi)"),
                Claim("RPTM mean", "BH", "implied, no table: relation-preserving positives "
                      "beat the hardest ones", kind="kreid")),
        ),
)}


