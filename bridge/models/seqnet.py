"""SeqNet, the ECG model from the blog post this project started from (../shared/seed/).

Four ``Conv1d`` branches (kernels 50/200/500/1000) over a 12-lead, 5000-sample signal, each
followed by ``nn.MaxPool2d((1, 200))`` applied to a rank-3 tensor (torch's unbatched form,
the node X2Paddle could not take), then ``cat``, ``view`` and two ``Linear`` layers.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SeqNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv1d(12, 10, 50)
        self.conv2 = nn.Conv1d(12, 10, 200)
        self.conv3 = nn.Conv1d(12, 10, 500)
        self.conv4 = nn.Conv1d(12, 10, 1000)
        self.pooling = nn.MaxPool2d((1, 200))
        self.fc1 = nn.Linear(900, 64)
        self.fc2 = nn.Linear(64, 1)

    def forward(self, x):
        batch_size = x.size(0)
        out1 = self.pooling(F.relu(self.conv1(x)))
        out2 = self.pooling(F.relu(self.conv2(x)))
        out3 = self.pooling(F.relu(self.conv3(x)))
        out4 = self.pooling(F.relu(self.conv4(x)))
        out = torch.cat([out1, out2, out3, out4], 2)
        out = out.view(batch_size, -1)
        out = self.fc1(out)
        out = F.relu(out)
        out = self.fc2(out)
        return out


def seqnet():
    """The default example: SeqNet with an example batch of 2 ECG records (12 x 5000)."""
    return SeqNet().eval(), (torch.randn(2, 12, 5000),)
