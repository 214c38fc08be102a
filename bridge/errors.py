"""Errors bridge reports to users. Each carries the exit code the CLI uses."""
from __future__ import annotations


class BridgeError(Exception):
    """Bad input or a conversion that cannot proceed: one line for the user, exit code 2."""

    exit_code = 2


class UnsupportedModel(BridgeError):
    """The converter refuses a node; the message names the node and op type."""


class ValidationFailed(BridgeError):
    """Outputs differ beyond tolerance: exit code 1."""

    exit_code = 1


class X2PaddleExit(BridgeError):
    """X2Paddle called exit() (it does so when saving the inference model fails)."""
