"""A training script written for PyTorch runs unchanged under ``import minicnn as torch``.

``SCRIPT`` below is ordinary PyTorch code: a custom ``Dataset``, a ``DataLoader`` with worker
processes, ``.data`` (``torch.max(outputs.data, 1)``, ``m.bias.data.zero_()``), in-place weight
initialisation, ``ReduceLROnPlateau``, ``clip_grad_norm_``, ``f"{loss:.4f}"``, a nested checkpoint
dict saved with ``torch.save`` and read back with ``torch.load(path, map_location=device)``, and the
CUDA/cudnn boilerplate. The test runs it twice: with PyTorch's imports, and with the same body
after only its import lines are renamed to minicnn. Both must train the toy task to high accuracy
and resume from the checkpoint exactly.
"""

from __future__ import annotations

import textwrap

import pytest

PYTORCH_IMPORTS = """
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim
import torch.backends.cudnn as cudnn
from torch.utils.data import Dataset, DataLoader
"""

MINICNN_IMPORTS = """
import minicnn as torch
import minicnn.nn as nn
import minicnn.nn.functional as F
import minicnn.optim as optim
import minicnn.backends.cudnn as cudnn
from minicnn.utils.data import Dataset, DataLoader
"""

SCRIPT = textwrap.dedent(
    """
    import numpy as np

    class Stripes(Dataset):
        '''8x8 images with a horizontal (class 0) or vertical (class 1) bright stripe, plus noise.'''

        def __init__(self, n, seed):
            rng = np.random.default_rng(seed)
            self.images = rng.normal(0.0, 0.3, size=(n, 1, 8, 8)).astype(np.float32)
            self.labels = rng.integers(0, 2, size=n)
            for i, label in enumerate(self.labels):
                k = rng.integers(1, 7)
                if label == 0:
                    self.images[i, 0, k, :] += 2.0
                else:
                    self.images[i, 0, :, k] += 2.0

        def __len__(self):
            return len(self.labels)

        def __getitem__(self, idx):
            return torch.tensor(self.images[idx]), int(self.labels[idx])

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
            self.bn1 = nn.BatchNorm2d(8)
            self.conv2 = nn.Conv2d(8, 16, 3, padding=1)
            self.dropout = nn.Dropout2d(0.1)
            self.fc = nn.Linear(16 * 2 * 2, 2)

        def forward(self, x):
            x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 2)
            x = F.max_pool2d(F.relu(self.conv2(x), inplace=True), 2)
            x = self.dropout(x)
            x = x.view(x.size(0), -1)
            return self.fc(x)

    def init_weights(m):
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            m.bias.data.zero_()
        elif isinstance(m, nn.Linear):
            m.weight.data.normal_(0, 0.01)
            m.bias.data.fill_(0.0)

    def train(model, device, loader, optimizer, epoch, log):
        model.train()
        for batch_idx, (data, target) in enumerate(loader):
            data, target = data.to(device, non_blocking=True), target.to(device)
            optimizer.zero_grad()
            output = model(data)
            loss = F.cross_entropy(output, target)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), max_norm=5.0)
            optimizer.step()
            if batch_idx % 4 == 0:
                log.append(f"epoch {epoch} batch {batch_idx} loss {loss.item():.4f} {loss:.3f}")

    def test(model, device, loader):
        model.eval()
        test_loss, correct, total = 0.0, 0, 0
        with torch.no_grad():
            for data, target in loader:
                data, target = data.to(device), target.to(device)
                outputs = model(data)
                test_loss += F.cross_entropy(outputs, target, reduction="sum").item()
                _, predicted = torch.max(outputs.data, 1)
                total += target.size(0)
                correct += predicted.eq(target.data).sum().item()
        return test_loss / total, correct / total

    def main(workdir):
        torch.manual_seed(1)
        use_cuda = torch.cuda.is_available()
        device = torch.device("cuda" if use_cuda else "cpu")
        if use_cuda:
            torch.cuda.manual_seed(1)
            cudnn.benchmark = True
        train_loader = DataLoader(Stripes(256, 0), batch_size=32, shuffle=True, num_workers=2,
                                  pin_memory=use_cuda, persistent_workers=True)
        test_loader = DataLoader(Stripes(128, 1), batch_size=64, shuffle=False, num_workers=0)
        model = Net().to(device)
        model.apply(init_weights)
        optimizer = optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        scheduler = optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=0)
        log, best_acc = [], 0.0
        for epoch in range(1, 5):
            train(model, device, train_loader, optimizer, epoch, log)
            test_loss, acc = test(model, device, test_loader)
            scheduler.step(test_loss)
            if acc >= best_acc:
                best_acc = acc
                state = {"net": model.state_dict(), "optimizer": optimizer.state_dict(),
                         "acc": acc, "epoch": epoch, "history": [test_loss, acc], "note": "best"}
                torch.save(state, f"{workdir}/ckpt.pth")
        checkpoint = torch.load(f"{workdir}/ckpt.pth", map_location=device)
        restored = Net().to(device)
        restored.load_state_dict(checkpoint["net"])
        _, restored_acc = test(restored, device, test_loader)
        resumed_opt = optim.SGD(restored.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
        resumed_opt.load_state_dict(checkpoint["optimizer"])
        return dict(best_acc=best_acc, restored_acc=restored_acc, epoch=checkpoint["epoch"],
                    note=checkpoint["note"], history=checkpoint["history"], log=log,
                    lr=optimizer.param_groups[0]["lr"], momentum_buffers=len(resumed_opt.state))
    """
)


def run_script(imports, workdir):
    namespace = {"__name__": "script"}
    exec(compile(imports + SCRIPT, "torch_style_script.py", "exec"), namespace)
    return namespace["main"](str(workdir))


@pytest.mark.parametrize("imports", [PYTORCH_IMPORTS, MINICNN_IMPORTS], ids=["pytorch", "minicnn"])
def test_pytorch_script_runs_unchanged(imports, tmp_path):
    result = run_script(imports, tmp_path)
    assert result["best_acc"] >= 0.95, result["log"]
    assert result["restored_acc"] == result["best_acc"]  # the checkpoint restores the best model exactly
    assert result["note"] == "best" and 1 <= result["epoch"] <= 4
    assert result["history"][1] == result["best_acc"]
    assert result["momentum_buffers"] == 8  # conv1 w/b, bn1 w/b, conv2 w/b, fc w/b
    assert len(result["log"]) == 4 * 2 and all(" loss " in line for line in result["log"])


def test_only_the_import_lines_differ():
    assert "minicnn" not in SCRIPT
    mine = [line.replace("minicnn", "torch") for line in MINICNN_IMPORTS.split("\n")]
    assert mine[1] == "import torch as torch" and mine[2:] == PYTORCH_IMPORTS.split("\n")[2:]
