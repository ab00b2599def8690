"""``minicnn.backends``: PyTorch's ``torch.backends`` switches, so ``import minicnn.backends.cudnn as
cudnn`` works in a ported script (and never silently imports the real PyTorch)."""

from minicnn.backends import cudnn, mps
