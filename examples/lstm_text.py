"""Text classifier: ``Embedding`` over int64 token ids, a 2-layer ``LSTM`` (batch_first), the
last time step into a linear head."""
from __future__ import annotations

import torch
import torch.nn as nn

VOCAB, SEQ_LEN = 100, 16


class LSTMText(nn.Module):
    def __init__(self, vocab: int = VOCAB, embed: int = 32, hidden: int = 48, num_classes: int = 5):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=2, batch_first=True)
        self.fc = nn.Linear(hidden, num_classes)

    def forward(self, tokens):
        out, _ = self.lstm(self.embedding(tokens))
        return self.fc(out[:, -1])


def build():
    return LSTMText().eval(), (torch.randint(0, VOCAB, (2, SEQ_LEN), dtype=torch.int64),)
