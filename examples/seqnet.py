"""SeqNet, the seed model (12-lead ECG, four Conv1d branches, unbatched ``MaxPool2d((1, 200))``)."""
from bridge.models.seqnet import seqnet as build  # noqa: F401
