"""The mix model: features, instrument roles, the network and its checkpoints.

Import the pieces from their modules (``automix.model.mixnet.MixModel``,
``automix.model.roles.role_from_name`` ...); the names below are re-exported for convenience.
"""
from automix.model.mixnet import MAX_STEMS, MixFeatures, MixModel, MixModelConfig
from automix.model.roles import GROUPS, ROLES, group_of_role, role_from_name

__all__ = ["MAX_STEMS", "MixFeatures", "MixModel", "MixModelConfig", "GROUPS", "ROLES", "group_of_role", "role_from_name"]
