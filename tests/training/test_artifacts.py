"""What a finished run leaves: embedding.keras with its sidecar, final.keras with the
exported heads (kreid.training.artifacts)."""

import json

import keras
import numpy as np

from kreid.models import load_model
from kreid.training.artifacts import save_trained_model
from kreid.training.objective import Objective


def test_embedding_model_sidecar_and_final_model_with_exported_heads(tmp_path):
    inputs = keras.Input((16, 8, 3))
    emb = keras.layers.Dense(6)(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, emb, name="toy")
    obj = Objective({"am_softmax": {}, "mpn": {"reduction": 2}, "batch_hard": {}}, 4, 6)
    obj.build()
    path = save_trained_model(model, obj.exported_heads, str(tmp_path), "toy_net", "synthetic",
                              (16, 8), "scale", step=7, trained_precision="mixed_bfloat16")
    assert path == str(tmp_path / "embedding.keras")
    side = json.load(open(path + ".json"))
    assert side["input_size"] == [16, 8] and side["preprocessing"] == "scale"
    assert side["model"] == "toy_net" and side["dataset"] == "synthetic"
    assert side["step"] == 7 and side["embedding_dim"] == 6
    assert side["trained_precision"] == "mixed_bfloat16" and len(side["fingerprint"]) == 16
    x = np.random.default_rng(0).random((2, 16, 8, 3)).astype(np.float32)
    np.testing.assert_allclose(load_model(path)(x).numpy(), model(x).numpy(), rtol=1e-6)
    final = load_model(str(tmp_path / "final.keras"))
    out = final(x)
    assert sorted(out) == ["am_softmax", "embeddings"]          # mpn's phi is not exported
    np.testing.assert_allclose(out["am_softmax"].numpy(),
                               obj.heads["am_softmax"](model(x)).numpy(), rtol=1e-5)
    assert not [f for f in tmp_path.iterdir() if "tmp" in f.name]     # written atomically
