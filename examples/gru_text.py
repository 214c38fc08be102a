"""Text classifier: ``Embedding`` over int64 token ids, a bidirectional ``GRU`` (batch_first),
mean over time into a linear head."""
from __future__ import annotations

import torch
import torch.nn as nn

VOCAB, SEQ_LEN = 100, 16


class GRUText(nn.Module):
    def __init__(self, vocab: int = VOCAB, embed: int = 32, hidden: int = 32, num_classes: int = 5):
        super().__init__()
        self.embedding = nn.Embedding(vocab, embed)
        self.gru = nn.GRU(embed, hidden, batch_first=True, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, num_classes)

    def forward(self, tokens):
        out, _ = self.gru(self.embedding(tokens))
        return self.fc(out.mean(dim=1))


def build():
    return GRUText().eval(), (torch.randint(0, VOCAB, (2, SEQ_LEN), dtype=torch.int64),)
