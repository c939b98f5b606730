"""The trained generator that is exported, loaded and sampled is the EMA average, not the raw weights."""

import torch

from compscope.generate import FlowMatching, load_model, train


def test_export_load_and_sample_use_ema_weights(tmp_path, qm9):
    out = tmp_path / "run"
    cfg = {
        "model": {"class_path": "compscope.generate.FlowMatching",
                  "init_args": {"hidden": 8, "num_layers": 1, "sample_steps": 2}},
        "data": {"init_args": {"split": "train", "batch_size": 8, "max_molecules": 32, "val_molecules": 8}},
        "module": {"init_args": {"lr": 1e-2}},
        "trainer": {"max_steps": 3, "max_time_minutes": None, "val_check_interval": 2, "ema_decay": 0.5,
                    "progress_bar": False},
    }
    result = train(cfg, out=out)
    pt = result.run.model
    ckpt = torch.load(result.run.last, weights_only=False)
    assert ckpt["global_step"] == 3  # last.ckpt is the end of training, not the last validation
    ema = {k[len("model."):]: v for k, v in ckpt["state_dict"].items()}
    raw = {k[len("model."):]: v for k, v in ckpt["current_model_state"].items()}
    assert ema.keys() == raw.keys() and ema
    assert any(not torch.equal(ema[k], raw[k]) for k in ema)  # the EMA lags the trained weights
    torch.testing.assert_close(ema["size_hist"], raw["size_hist"])  # buffers are copied, not averaged
    exported = torch.load(pt, weights_only=False)["state_dict"]
    assert exported.keys() == ema.keys() and all(torch.equal(exported[k], ema[k]) for k in ema)
    for loaded in (load_model(pt), load_model(result.run.last)):
        assert all(torch.equal(v, ema[k]) for k, v in loaded.state_dict().items())
    # sampling goes through those weights: the loaded model samples like one built from the EMA state
    twin = FlowMatching(hidden=8, num_layers=1, sample_steps=2)
    twin.load_state_dict(ema)
    a, _ = load_model(pt).sample(3, seed=1)
    b, _ = twin.eval().sample(3, seed=1)
    assert all((xa == xb).all() and (ta == tb).all() for (xa, ta), (xb, tb) in zip(a, b))
