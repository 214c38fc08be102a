"""A two-level U-Net for segmentation: conv encoder with max pooling, a ``ConvTranspose2d`` up
step and an ``F.interpolate`` (bilinear) up step, skip connections joined with ``cat``."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def double_conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


class UNet(nn.Module):
    def __init__(self, in_channels: int = 3, num_classes: int = 4):
        super().__init__()
        self.enc1 = double_conv(in_channels, 8)
        self.enc2 = double_conv(8, 16)
        self.bottleneck = double_conv(16, 32)
        self.up2 = nn.ConvTranspose2d(32, 16, 2, stride=2)
        self.dec2 = double_conv(32, 16)
        self.reduce1 = nn.Conv2d(16, 8, 1)
        self.dec1 = double_conv(16, 8)
        self.head = nn.Conv2d(8, num_classes, 1)

    def forward(self, x):
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        b = self.bottleneck(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(b), e2], dim=1))
        up1 = F.interpolate(self.reduce1(d2), scale_factor=2, mode="bilinear", align_corners=False)
        d1 = self.dec1(torch.cat([up1, e1], dim=1))
        return self.head(d1)


def build():
    model = UNet()
    with torch.no_grad():
        for m in model.modules():  # real BatchNorm statistics (fresh ones are the identity)
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 1.5)
    return model.eval(), (torch.randn(2, 3, 32, 32),)
