"""The batch sampler of a run, by the name the plan gives it (kreid.training.samplers)."""

import numpy as np
import pytest

from kreid.data.records import Record
from kreid.data.sampler import PKSampler
from kreid.mining.triplets import OHMSampler, RandomTripletSampler
from kreid.training import plan as plan_
from kreid.training.samplers import SAMPLERS, make_sampler


def _records(n_ids=6, per_id=4, cams=2):
    return [Record(f"/x/{i}_{j}.jpg", pid=i + 1, camid=j % cams, label=i)
            for i in range(n_ids) for j in range(per_id)]


@pytest.mark.parametrize("losses,kind,cls,batch", [
    ({"batch_hard": {}}, "pk", PKSampler, 12),
    ({"triplet": {"mining": "random"}}, "random_triplets", RandomTripletSampler, 12),
    ({"lifted": {"pairs": "triplets"}}, "random_triplets", RandomTripletSampler, 12),
    ({"triplet": {"mining": "ohm"}}, "ohm", OHMSampler, 12),
])
def test_the_terms_choose_the_sampler(losses, kind, cls, batch, tmp_path):
    p = plan_.resolve({"losses": losses, "batch": {"p": 3, "k": 4},
                       "ohm": {"every": 7, "identities": 4}})
    assert p.sampler == kind
    sampler = make_sampler(p, _records(), str(tmp_path))
    assert isinstance(sampler, cls) and sampler.batch_size == batch
    if kind == "ohm":                # mined with the model: every ohm.every steps
        assert sampler.refresh_every == 7
        sampler.refresh(0, lambda idx: np.random.default_rng(0).normal(size=(len(idx), 4)))
    assert sampler.batch_at(0).shape == (batch,)
    assert not list(tmp_path.iterdir())          # none of them writes into the workdir


def test_pk_settings_reach_the_sampler(tmp_path):
    records = _records(n_ids=4, per_id=3)
    p = plan_.resolve({"batch": {"p": 2, "k": 4, "short": "error"}})
    from kreid.errors import SamplerError
    with pytest.raises(SamplerError, match="K=4 but 4 identities have fewer images"):
        make_sampler(p, records, str(tmp_path))
    p = plan_.resolve({"batch": {"p": 2, "k": 2, "camera_balanced": True}, "seed": 5})
    sampler = make_sampler(p, records, str(tmp_path))
    assert sampler.seed == 5
    cams = np.array([r.camid for r in records])[sampler.batch_at(0)].reshape(2, 2)
    assert (np.sort(cams, 1) == [0, 1]).all()    # each identity's K images span both cameras


def test_every_name_a_term_can_give_is_a_sampler():
    from kreid.training import terms

    named = {"pk"}
    for cls in terms.TERMS.values():
        for spec in ({}, {"mining": "random"}, {"mining": "ohm"}, {"pairs": "triplets"}):
            try:
                t = cls(**spec)
            except Exception:  # noqa: BLE001  (an option this term does not have)
                continue
            named.add(t.sampler or "pk")
    assert named == set(SAMPLERS) == {"pk", "random_triplets", "ohm", "rptm"}
