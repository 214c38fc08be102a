"""A 1-D signal model whose pools use torch's unbatched form (a 2-D pool on a rank-3
``(N, C, L)`` tensor) in the variants the seed model does not: ``AvgPool2d((1, k))``,
``MaxPool2d`` with ``ceil_mode=True``, ``MaxPool2d`` with padding, and a ``MaxPool2d`` whose
first kernel dim is 2 (it pools across channels, in pairs)."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SignalPools(nn.Module):
    def __init__(self, leads: int = 4, num_classes: int = 3):
        super().__init__()
        self.conv1 = nn.Conv1d(leads, 8, 7, padding=3)
        self.avg = nn.AvgPool2d((1, 4))  # (N, 8, 256) -> (N, 8, 64)
        self.conv2 = nn.Conv1d(8, 8, 5, padding=2)
        self.ceil = nn.MaxPool2d((1, 3), ceil_mode=True)  # 64 -> 22
        self.conv3 = nn.Conv1d(8, 16, 3, padding=1)
        self.padded = nn.MaxPool2d((1, 3), stride=(1, 2), padding=(0, 1))  # 22 -> 11
        self.across = nn.MaxPool2d((2, 1))  # pools channel pairs: (N, 16, 11) -> (N, 8, 11)
        self.fc = nn.Linear(8 * 11, num_classes)

    def forward(self, x):
        x = self.avg(F.relu(self.conv1(x)))
        x = self.ceil(F.relu(self.conv2(x)))
        x = self.padded(F.relu(self.conv3(x)))
        x = self.across(x)
        return self.fc(x.flatten(1))


def build():
    return SignalPools().eval(), (torch.randn(2, 4, 256),)
