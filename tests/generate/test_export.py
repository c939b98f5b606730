"""The trained generator that is exported, loaded and sampled is the EMA copy, not the raw weights."""

import torch

from compscope.generate import FlowMatching, GeneratorModule, load_model, train


def test_ema_update_is_a_lerp():
    model = FlowMatching(hidden=8, num_layers=1, sample_steps=2)
    module = GeneratorModule(model, {}, ema_decay=0.75)
    before = [p.clone() for p in module.ema.parameters()]
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    module.on_train_batch_end(None, None, 0)
    for old, new in zip(before, module.ema.parameters()):
        torch.testing.assert_close(new, old + 0.25)


def test_export_load_and_sample_use_ema_weights(tmp_path, qm9):
    out = tmp_path / "run"
    cfg = {
        "model": {"class_path": "compscope.generate.FlowMatching",
                  "init_args": {"hidden": 8, "num_layers": 1, "sample_steps": 2}},
        "data": {"split": "train", "batch_size": 8, "max_molecules": 32, "val_molecules": 8},
        "module": {"lr": 1e-2, "ema_decay": 0.5},
        "run": {"out": str(out), "max_steps": 3, "max_time": None, "val_every_steps": 2},
    }
    pt = train(cfg)
    ckpt_path = out / "checkpoints" / "last.ckpt"
    sd = torch.load(ckpt_path, weights_only=False)["state_dict"]
    ema = {k[len("ema."):]: v for k, v in sd.items() if k.startswith("ema.")}
    raw = {k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")}
    assert ema.keys() == raw.keys() and ema
    assert any(not torch.equal(ema[k], raw[k]) for k in ema)  # the EMA lags the trained weights
    exported = torch.load(pt, weights_only=False)["state_dict"]
    assert exported.keys() == ema.keys() and all(torch.equal(exported[k], ema[k]) for k in ema)
    for loaded in (load_model(pt), load_model(ckpt_path)):
        assert all(torch.equal(v, ema[k]) for k, v in loaded.state_dict().items())
    # sampling goes through those weights: the loaded model samples like one built from the EMA state
    twin = FlowMatching(hidden=8, num_layers=1, sample_steps=2)
    twin.load_state_dict(ema)
    a, _ = load_model(pt).sample(3, seed=1)
    b, _ = twin.eval().sample(3, seed=1)
    assert all((xa == xb).all() and (ta == tb).all() for (xa, ta), (xb, tb) in zip(a, b))
