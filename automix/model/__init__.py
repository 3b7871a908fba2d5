"""The mix model: features, instrument roles, the network and its checkpoints.

Import the pieces from their modules (``automix.model.mixnet.MixModel``,
``automix.model.roles.role_from_name`` ...); the names below are re-exported for convenience.
The torch ones (:class:`MixModel` ...) load on first use, so that importing a torch-free part
(roles, the numpy inference in :mod:`automix.model.inference`) does not import torch.
"""
from automix.model.roles import GROUPS, ROLES, group_of_role, role_from_name
from automix.stems_reader import MAX_STEMS

__all__ = ["MAX_STEMS", "MixFeatures", "MixModel", "MixModelConfig", "GROUPS", "ROLES", "group_of_role", "role_from_name"]

_TORCH_NAMES = ("MixFeatures", "MixModel", "MixModelConfig")


def __getattr__(name: str):
    if name in _TORCH_NAMES:
        from automix.model import mixnet

        return getattr(mixnet, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
