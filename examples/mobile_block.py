"""MobileNetV3-style blocks: 1x1 expand, depthwise 3x3 conv, ``Hardswish``, squeeze-excite
gated by ``Hardsigmoid``, 1x1 project with a residual; global pool and a linear head."""
from __future__ import annotations

import torch
import torch.nn as nn


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, reduced, 1)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(reduced, channels, 1)
        self.gate = nn.Hardsigmoid()

    def forward(self, x):
        return x * self.gate(self.fc2(self.relu(self.fc1(self.pool(x)))))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, expand: int, cout: int, stride: int):
        super().__init__()
        self.use_residual = stride == 1 and cin == cout
        self.block = nn.Sequential(
            nn.Conv2d(cin, expand, 1, bias=False), nn.BatchNorm2d(expand), nn.Hardswish(),
            nn.Conv2d(expand, expand, 3, stride, 1, groups=expand, bias=False),  # depthwise
            nn.BatchNorm2d(expand), nn.Hardswish(),
            SqueezeExcite(expand, max(8, expand // 4)),
            nn.Conv2d(expand, cout, 1, bias=False), nn.BatchNorm2d(cout),
        )

    def forward(self, x):
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileBlockNet(nn.Module):
    def __init__(self, num_classes: int = 10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.blocks = nn.Sequential(
            InvertedResidual(16, 48, 16, 1),
            InvertedResidual(16, 64, 24, 2),
            InvertedResidual(24, 72, 24, 1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Sequential(nn.Linear(24, 64), nn.Hardswish(), nn.Linear(64, num_classes))

    def forward(self, x):
        return self.head(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def build():
    model = MobileBlockNet()
    with torch.no_grad():
        for m in model.modules():  # real BatchNorm statistics (fresh ones are the identity)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval(), (torch.randn(2, 3, 64, 64),)
