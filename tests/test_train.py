"""minicnn.train: learning on real data (scikit-learn's 8x8 digits), exact resume, NaN stop, callbacks."""

from __future__ import annotations

import numpy as np
import pytest

import minicnn as mc
from minicnn import nn, optim
from minicnn.data import ArraysDataset, DataLoader, Normalize, RandomCrop
from minicnn.nn import functional as F
from minicnn.train import CheckpointError, TrainingDiverged, confusion_matrix, evaluate, fit, predict


@pytest.fixture(scope="module")
def digits():
    """The 1,797 8x8 digits that ship with scikit-learn, as uint8 images; a fixed 80/20 split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255
    perm = np.random.default_rng(0).permutation(len(images))
    train, test = perm[:1437], perm[1437:]
    return (
        ArraysDataset(images[train], d.target[train], name="digits-train"),
        ArraysDataset(images[test], d.target[test], name="digits-test"),
    )


def small_cnn(dropout=0.0):
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(16 * 4 * 4, 10),
    )


NORM = Normalize((0.3,), (0.4,))


def test_fit_learns_digits_to_90_percent(digits):
    train, test = digits
    mc.manual_seed(0)
    model = small_cnn()
    train_loader = DataLoader(train, batch_size=32, shuffle=True, transform=NORM, seed=0)
    test_loader = DataLoader(test, batch_size=120, transform=NORM)
    history = fit(
        model, train_loader, test_loader, optim.Adam(model.parameters(), lr=3e-3), epochs=4, progress=False
    )
    assert history["epoch"] == [1, 2, 3, 4]
    assert history["val_acc"][-1] >= 0.90, history
    assert history["train_loss"][-1] < history["train_loss"][0]
    # evaluate() agrees with an independent computation over the whole test set
    result = evaluate(model, test_loader)
    model.eval()
    with mc.no_grad():
        logits = np.concatenate([model(x).numpy() for x, _ in test_loader]).astype(np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    expected_loss = -log_probs[np.arange(len(test)), test.targets].mean()
    assert result["loss"] == pytest.approx(expected_loss, rel=1e-5)
    assert result["acc"] == pytest.approx(float((logits.argmax(1) == test.targets).mean()))
    assert history["val_acc"][-1] == pytest.approx(result["acc"])
    pred, true = predict(model, test_loader)
    np.testing.assert_array_equal(true, test.targets)
    np.testing.assert_array_equal(pred, logits.argmax(1))
    cm = confusion_matrix(true, pred, 10)
    assert cm.sum() == len(test) and np.trace(cm) == int((pred == true).sum())
    assert cm[3].sum() == int((true == 3).sum()) and cm[:, 3].sum() == int((pred == 3).sum())


def _setup(train, seed):
    """All the state that crosses epochs: dropout, BN, momentum, a per-batch schedule, augmentation."""
    mc.manual_seed(seed)
    model = small_cnn(dropout=0.3)
    loader = DataLoader(
        train.subset(320),
        batch_size=32,
        shuffle=True,
        seed=seed,
        transform=mc.data.Compose([RandomCrop(8, 1), NORM]),
    )
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
    sched = optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, epochs=3, steps_per_epoch=len(loader))
    return model, loader, opt, sched


def test_resume_is_bit_for_bit_identical_to_an_uninterrupted_run(digits, tmp_path):
    train, test = digits
    val = DataLoader(test.subset(100), batch_size=50, transform=NORM)

    model, loader, opt, sched = _setup(train, seed=1)
    full = fit(model, loader, val, opt, 3, scheduler=sched, checkpoint_dir=tmp_path / "full", progress=False)
    reference = {k: v.numpy().copy() for k, v in model.state_dict().items()}

    model, loader, opt, sched = _setup(train, seed=1)
    fit(
        model, loader, val, opt, 2, scheduler=sched, checkpoint_dir=tmp_path / "cut", progress=False
    )  # "crash"
    # A fresh process: other seeds, other initial weights -- all of it must come from the checkpoint.
    model, loader, opt, sched = _setup(train, seed=99)
    resumed = fit(model, loader, val, opt, 3, scheduler=sched, checkpoint_dir=tmp_path / "cut", resume=True,
                  progress=False)  # fmt: skip

    for key in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc", "lr"):
        assert resumed[key] == full[key], key
    state = model.state_dict()
    assert list(state) == list(reference)
    for key, value in reference.items():
        assert np.array_equal(state[key].numpy(), value), f"{key} differs after resume"
    assert sched.last_epoch == 3 * len(loader)


def test_nan_loss_stops_training_with_a_helpful_message(digits, tmp_path):
    train, _ = digits
    mc.manual_seed(0)
    model = small_cnn()
    loader = DataLoader(train.subset(128), batch_size=32, transform=NORM)
    calls = []

    def exploding_loss(logits, labels):
        calls.append(1)
        loss = F.cross_entropy(logits, labels)
        return loss * float("nan") if len(calls) == 6 else loss  # batch 2 of epoch 2

    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(TrainingDiverged) as info:
        fit(model, loader, None, opt, 3, loss_fn=exploding_loss, checkpoint_dir=tmp_path, progress=False)
    msg = str(info.value)
    assert "nan at epoch 2, batch 2" in msg and "learning rate" in msg and "normalised" in msg
    assert "checkpoint.safetensors" in msg
    assert all(np.isfinite(p.numpy()).all() for p in model.parameters())  # stopped before the update


def test_callbacks_history_and_progress_output(digits, capsys):
    train, test = digits
    mc.manual_seed(0)
    model = small_cnn()
    seen = []

    def stop_after_two(epoch, history):
        seen.append((epoch, len(history["train_loss"])))
        return epoch == 2

    train_loader = DataLoader(train.subset(200), batch_size=50, shuffle=True, transform=NORM, seed=0)
    history = fit(model, train_loader, DataLoader(test.subset(50), 50, transform=NORM),
                  optim.Adam(model.parameters()), 5, callbacks=[stop_after_two], progress=True)  # fmt: skip
    assert seen == [(1, 1), (2, 2)] and history["epoch"] == [1, 2]
    assert all(0.0 <= a <= 1.0 for a in history["train_acc"] + history["val_acc"])
    assert history["lr"] == [0.001, 0.001] and all(s > 0 for s in history["images_per_s"])
    out = capsys.readouterr().out
    assert "epoch 1/5: train loss" in out and "val loss" in out and "img/s" in out
    assert "a callback stopped training after epoch 2" in out


def test_fit_errors(digits):
    train, _ = digits
    model = small_cnn()
    loader = DataLoader(train.subset(10), batch_size=5, transform=NORM)
    opt = optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
        fit(model, loader, None, opt, 1, resume=True, progress=False)
    with pytest.raises(ValueError, match="epochs must be a non-negative integer"):
        fit(model, loader, None, opt, 2.5, progress=False)
    flat = nn.Sequential(nn.Flatten(0))  # returns (N*64,) instead of (N, classes)
    with pytest.raises(
        ValueError, match=r"logits of shape \(N, num_classes\) = \(5, K\).*got shape \(320,\)"
    ):
        fit(flat, loader, None, opt, 1, progress=False)


def test_an_empty_loader_is_named_not_blamed_on_the_learning_rate(digits):
    train, test = digits
    model = small_cnn()
    opt = optim.SGD(model.parameters(), lr=0.1)
    empty = DataLoader(train.subset(3), batch_size=4, drop_last=True, transform=NORM)
    with pytest.raises(ValueError) as info:
        fit(model, empty, None, opt, 1, progress=False)
    message = str(info.value)
    assert message.startswith("fit: the training loader yielded no batches")
    assert "3 images, fewer than batch_size=4, and drop_last=True" in message
    assert "learning rate" not in message and "nan" not in message
    loader = DataLoader(train.subset(8), batch_size=4, transform=NORM)
    no_val = DataLoader(test.subset(2), batch_size=4, drop_last=True, transform=NORM)
    with pytest.raises(ValueError, match="evaluate: the validation loader yielded no batches"):
        fit(model, loader, no_val, opt, 1, progress=False)
    with pytest.raises(ValueError, match="evaluate: the validation loader yielded no batches"):
        evaluate(model, no_val)
    with pytest.raises(ValueError, match=r"yielded no batches \(it is empty\)"):
        fit(model, [], None, opt, 1, progress=False)


def _short_run(train, checkpoint_dir, model=None, resume=False, progress=False):
    mc.manual_seed(0)
    model = model if model is not None else small_cnn()
    loader = DataLoader(train.subset(16), batch_size=8, shuffle=True, transform=NORM, seed=0)
    opt = optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return fit(model, loader, None, opt, 1, checkpoint_dir=checkpoint_dir, resume=resume, progress=progress)


def test_resume_says_what_it_does_even_without_progress_bars(digits, tmp_path, capsys):
    train, _ = digits
    _short_run(train, tmp_path, resume=True, progress=False)
    out = capsys.readouterr().out
    assert out == f"no checkpoint at {tmp_path / 'checkpoint.safetensors'} yet: starting from scratch\n"
    _short_run(train, tmp_path, resume=True, progress=False)
    assert capsys.readouterr().out == f"resumed from {tmp_path / 'checkpoint.safetensors'} after epoch 1\n"


def test_resume_from_a_bad_checkpoint_is_a_checkpoint_error(digits, tmp_path):
    train, _ = digits
    checkpoint = tmp_path / "checkpoint.safetensors"
    checkpoint.write_bytes(b"\x00garbage, not a safetensors file")
    with pytest.raises(CheckpointError) as info:
        _short_run(train, tmp_path, resume=True)
    message = str(info.value)
    assert message.startswith(f"fit: cannot resume from {checkpoint}: ") and "\n" not in message
    assert "truncated or corrupt" in message

    _short_run(train, tmp_path / "other")  # a checkpoint of a model with other layers
    other = nn.Sequential(nn.Flatten(), nn.Linear(64, 10))
    with pytest.raises(CheckpointError, match="fit: cannot resume from .*other.*checkpoint.safetensors"):
        _short_run(train, tmp_path / "other", model=other, resume=True)


def test_reduce_lr_on_plateau_is_given_the_validation_loss(digits, monkeypatch):
    train, test = digits
    mc.manual_seed(0)
    model = small_cnn()
    loader = DataLoader(train.subset(32), batch_size=16, transform=NORM)
    val = DataLoader(test.subset(16), batch_size=16, transform=NORM)
    opt = optim.SGD(model.parameters(), lr=0.1)
    sched = optim.lr_scheduler.ReduceLROnPlateau(opt, mode="max", factor=0.5, patience=0)
    seen = []
    real_step = sched.step
    monkeypatch.setattr(sched, "step", lambda metrics: (seen.append(metrics), real_step(metrics)))
    history = fit(model, loader, val, opt, 3, scheduler=sched, progress=False)
    assert seen == history["val_loss"]  # once per epoch, after validation
    # mode="max" on a loss: epochs 2 and 3 do not beat epoch 1's value unless the loss went up
    expected, lr = [], 0.1
    for epoch in range(3):
        expected.append(lr)
        if epoch > 0 and not seen[epoch] > max(seen[:epoch]) * (1 + 1e-4):
            lr *= 0.5
    assert history["lr"] == expected


def test_manual_seed_accepts_negative_seeds_like_torch():
    """torch.manual_seed(s) with -2**63 <= s < 0 uses s + 2**64 (so initial_seed() is that)."""
    mc.manual_seed(-1)
    assert mc.initial_seed() == 2**64 - 1
    a = mc.randn(5).numpy()
    mc.manual_seed(2**64 - 1)
    np.testing.assert_array_equal(mc.randn(5).numpy(), a)
    mc.manual_seed(-(2**63))
    assert mc.initial_seed() == 2**63
    for bad in (2**64, -(2**63) - 1):
        with pytest.raises(ValueError, match=r"seed must be in \[-2\*\*63, 2\*\*64 - 1\]"):
            mc.manual_seed(bad)
    with pytest.raises(TypeError, match="a seed is an integer, got str 'abc'"):
        mc.manual_seed("abc")
    mc.manual_seed(0)
