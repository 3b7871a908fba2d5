"""The mix model's inference in numpy: ``automix mix`` without importing torch.

:class:`ArrayMixModel` runs the forward pass of a :class:`automix.model.mixnet.MixModel`
(eval mode) from its checkpoint weights: the feature encoders (``Linear -> GELU -> Linear``),
the role embedding, the pair-side and token-type offsets, the pre-norm transformer encoder
layers (multi-head self-attention with the padding tokens masked, GELU feed-forward), the
output norm and head, and the pair-spread head; :class:`ArrayMixEnsemble` averages members on
the [0, 1] output scale like :class:`automix.model.mixnet.MixEnsemble`. Everything is float32
like the torch model (GELU exact, by the error function), so the two agree to float rounding
(tests compare them on the shipped ensemble and on freshly initialised models).

:func:`load_array_model` reads a checkpoint with :func:`automix.weights.read_weight_arrays`
(a restricted unpickler, no torch) and checks it as :func:`automix.model.checkpoint.read_checkpoint`
does (the checks live here, torch-free, and that function uses them). Weights missing from
checkpoints written before a part existed are filled as the torch model's
``_load_from_state_dict`` fills them (no pair-side offset; no spread).

The torch model stays the one for training and for anything that needs gradients.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from automix.dsp.params import PARAM_TABLE_VERSION, STRIP
from automix.errors import ModelError
from automix.model.array_features import N_FEATURES
from automix.model.roles import ROLES

FORMAT = "automix-mixer"
FORMAT_VERSION = 1
#: Where the shipped default weights live (repository root ``models/``).
DEFAULT_MODEL_PATH = Path(__file__).resolve().parents[2] / "models" / "mixer.pt"
CHECKPOINT_HINT = "train one (see README 'Training') or pass --model PATH"

#: Unit-interval positions of the initial outputs are kept this far from 0 and 1, so the
#: sigmoid still has gradient where a neutral setting sits at the edge of its range.
UNIT_MARGIN = 0.01
#: Largest pan distance (pan units, -1..1 scale) the pair-spread head can put between
#: two parts of one role (each moves half of it, in opposite directions).
MAX_PAIR_SPREAD: float = 1.2
#: Starting spread of a pair: sigmoid(0) x 1.2 = 0.6 apart, pans at +/-0.3 (about 4 dB to one side).
INITIAL_SPREAD_LOGIT: float = 0.0
#: Spread head bias of checkpoints written before the head existed: sigmoid(-40) ~ 4e-18, no spread.
NO_SPREAD_LOGIT: float = -40.0
#: LayerNorm epsilon of the torch model (torch's default).
LAYER_NORM_EPS = 1e-5

_F32 = np.float32
_erf = np.frompyfunc(math.erf, 1, 1)


def check_checkpoint(path: Path, payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` if it is a mix-model checkpoint this automix can use; ModelError naming the reason."""
    if payload.get("format") != FORMAT:
        raise ModelError(f"{path} is not an automix mix-model checkpoint")
    version = payload.get("param_table_version")
    if version != PARAM_TABLE_VERSION:
        raise ModelError(
            f"{path} was trained for console parameter table version {version}, but this automix "
            f"uses version {PARAM_TABLE_VERSION}; retrain the model or use a matching automix"
        )
    if list(payload.get("strip_names", [])) != list(STRIP.names):
        raise ModelError(f"{path} predicts different console parameters than this automix's channel strip")
    if list(payload.get("roles", [])) != list(ROLES):
        raise ModelError(f"{path} was trained with a different list of instrument roles")
    return payload


# ----------------------------------------------------------------------------- building blocks
def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU ``x Phi(x)`` (torch's default, by the error function), float32."""
    x = np.asarray(x, dtype=_F32)
    erf = _erf(x.astype(np.float64) / math.sqrt(2.0)).astype(np.float64)
    return (0.5 * x.astype(np.float64) * (1.0 + erf)).astype(_F32)


def sigmoid(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return (0.5 * (1.0 + np.tanh(0.5 * x))).astype(_F32)


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float = LAYER_NORM_EPS) -> np.ndarray:
    mean = x.mean(-1, keepdims=True, dtype=np.float64)
    var = np.square(x - mean).mean(-1, keepdims=True)
    return ((x - mean) / np.sqrt(var + eps) * weight + bias).astype(_F32)


def role_parity_array(roles: np.ndarray) -> np.ndarray:
    """:func:`automix.model.mixnet.role_parity` (every stem real): ``[B, S]`` +1 / -1 alternately
    over the stems that share a role, in the stems' order; 0 for a stem alone in its role."""
    roles = np.asarray(roles)
    same = roles[:, :, None] == roles[:, None, :]
    earlier = np.tril(same, k=-1).sum(-1)
    count = same.sum(-1)
    sign = 1.0 - 2.0 * (earlier % 2)
    return np.where(count > 1, sign, 0.0).astype(_F32)


class _Weights:
    """A state dictionary's float32 arrays, with a musician-readable error for a missing one."""

    def __init__(self, state: dict[str, Any], source: str):
        self.state, self.source = state, source

    def __call__(self, key: str) -> np.ndarray:
        try:
            return np.asarray(self.state[key], dtype=_F32)
        except KeyError:
            raise ModelError(f"{self.source} does not match this automix's mix-model architecture: "
                             f"its weights lack {key!r}") from None

    def mlp(self, name: str):
        return [(self(f"{name}.{i}.weight"), self(f"{name}.{i}.bias")) for i in (0, 2)]


def _linear(x: np.ndarray, wb) -> np.ndarray:
    w, b = wb
    return (x @ w.T + b).astype(_F32)


def _mlp(x: np.ndarray, layers) -> np.ndarray:
    return _linear(gelu(_linear(x, layers[0])), layers[1])


# ----------------------------------------------------------------------------- the model
class ArrayMixModel:
    """One :class:`automix.model.mixnet.MixModel` in numpy (eval mode): features -> strip settings.

    Parameters
    ----------
    state : dict of arrays
        The model's ``state_dict`` (numpy or anything ``np.asarray`` takes, e.g. torch CPU tensors).
    config : dict
        Its ``MixModelConfig`` fields (``d_model``, ``n_heads``, ``n_layers``, ``role_dim``; ``dropout`` is unused).
    source : str
        Named in errors (the checkpoint's path).
    """

    def __init__(self, state: dict[str, Any], config: dict[str, Any], source: str = "the mix model"):
        state = dict(state)
        d = int(config.get("d_model", 64))
        # checkpoints from before the pair-side embedding and the spread head (as MixModel loads them)
        if "pair_side" not in state:
            state["pair_side"] = np.zeros(d, _F32)
        if "spread_weight" not in state:
            state["spread_weight"] = np.zeros(d, _F32)
            state["spread_bias"] = np.array(NO_SPREAD_LOGIT, _F32)
        w = _Weights(state, source)
        self.config = dict(config)
        self.d_model, self.n_heads, self.n_layers = d, int(config.get("n_heads", 4)), int(config.get("n_layers", 2))
        if d % self.n_heads:
            raise ModelError(f"{source}: d_model {d} is not a multiple of n_heads {self.n_heads}")
        self.role_embedding = w("role_embedding.weight")
        self.stem_encoder = w.mlp("stem_encoder")
        self.mix_encoder = w.mlp("mix_encoder")
        self.reference_encoder = w.mlp("reference_encoder")
        self.no_reference, self.token_type, self.pair_side = w("no_reference"), w("token_type"), w("pair_side")
        self.layers = []
        for i in range(self.n_layers):
            p = f"context.layers.{i}."
            self.layers.append({k: w(p + k) for k in (
                "self_attn.in_proj_weight", "self_attn.in_proj_bias", "self_attn.out_proj.weight",
                "self_attn.out_proj.bias", "linear1.weight", "linear1.bias", "linear2.weight", "linear2.bias",
                "norm1.weight", "norm1.bias", "norm2.weight", "norm2.bias")})
        if f"context.layers.{self.n_layers}.linear1.weight" in state:
            raise ModelError(f"{source} has more attention layers than its configuration says")
        self.out_norm = (w("out_norm.weight"), w("out_norm.bias"))
        self.head = w.mlp("head")
        self.spread_weight, self.spread_bias = w("spread_weight"), w("spread_bias").reshape(())
        n_in = self.stem_encoder[0][0].shape[1]
        if n_in != N_FEATURES + 1 + self.role_embedding.shape[1] + N_FEATURES or self.head[1][0].shape[0] != STRIP.size:
            raise ModelError(f"{source} does not match this automix's mix-model architecture "
                             f"(its inputs or outputs have other sizes)")

    # ------------------------------------------------------------------ layers
    def _attention(self, x: np.ndarray, pad: np.ndarray, p: dict) -> np.ndarray:
        B, L, d = x.shape
        h = self.n_heads
        qkv = x @ p["self_attn.in_proj_weight"].T + p["self_attn.in_proj_bias"]  # [B, L, 3d]
        q, k, v = (qkv[..., i * d:(i + 1) * d].reshape(B, L, h, d // h).transpose(0, 2, 1, 3) for i in range(3))
        scores = (q @ k.transpose(0, 1, 3, 2)) / _F32(math.sqrt(d // h))  # [B, h, L, L]
        scores = np.where(pad[:, None, None, :], -np.inf, scores)
        scores = scores - scores.max(-1, keepdims=True)
        weights = np.exp(scores.astype(np.float64))
        weights = (weights / weights.sum(-1, keepdims=True)).astype(_F32)
        out = (weights @ v).transpose(0, 2, 1, 3).reshape(B, L, d)
        return (out @ p["self_attn.out_proj.weight"].T + p["self_attn.out_proj.bias"]).astype(_F32)

    def _encoder_layer(self, x: np.ndarray, pad: np.ndarray, p: dict) -> np.ndarray:
        x = x + self._attention(layer_norm(x, p["norm1.weight"], p["norm1.bias"]), pad, p)
        ff = layer_norm(x, p["norm2.weight"], p["norm2.bias"])
        ff = _linear(gelu(_linear(ff, (p["linear1.weight"], p["linear1.bias"]))), (p["linear2.weight"], p["linear2.bias"]))
        return (x + ff).astype(_F32)

    # ------------------------------------------------------------------ prediction
    def predict_unit(self, stem_feats: np.ndarray, mix_feats: np.ndarray, roles: np.ndarray,
                     reference_feats: np.ndarray | None = None) -> np.ndarray:
        """Sigmoid outputs ``[B, S, P]`` in [0, 1] (:meth:`MixModel.predict_unit`, every stem real).

        ``stem_feats [B, S, N_FEATURES + 1]`` and ``mix_feats [B, N_FEATURES]`` from
        :func:`automix.model.array_features.stem_features_array`; ``roles [B, S]`` indices into ROLES.
        """
        stem_feats = np.asarray(stem_feats, _F32)
        mix = np.asarray(mix_feats, _F32)
        B, S, _ = stem_feats.shape
        roles = np.clip(np.asarray(roles, dtype=np.int64), 0, len(ROLES) - 1)
        stem_in = np.concatenate([stem_feats, self.role_embedding[roles], np.broadcast_to(mix[:, None], (B, S, mix.shape[-1]))], -1)
        parity = role_parity_array(roles)
        tokens = _mlp(stem_in, self.stem_encoder) + self.token_type[0]
        tokens = tokens + parity[..., None] * self.pair_side
        mix_token = _mlp(mix, self.mix_encoder) + self.token_type[1]
        if reference_feats is None:
            ref_token = np.broadcast_to(self.no_reference, (B, self.d_model))
        else:
            ref = np.asarray(reference_feats, _F32)
            ref_token = _mlp(np.concatenate([ref, ref - mix], -1), self.reference_encoder)
        ref_token = ref_token + self.token_type[2]
        x = np.concatenate([tokens, mix_token[:, None], ref_token[:, None]], 1).astype(_F32)
        pad = np.zeros((B, S + 2), dtype=bool)
        for p in self.layers:
            x = self._encoder_layer(x, pad, p)
        hidden = layer_norm(x[:, :S], *self.out_norm)
        unit = sigmoid(_mlp(hidden, self.head))
        spread = _F32(MAX_PAIR_SPREAD) * sigmoid(hidden @ self.spread_weight + self.spread_bias)
        i = STRIP.index("pan")
        unit[..., i] = np.clip(unit[..., i] + _F32(0.25) * parity * spread, 0.0, 1.0)
        return unit

    def predict(self, stem_feats, mix_feats, roles, reference_feats=None) -> np.ndarray:
        """Strip values ``[B, S, P]`` float32 (units of :data:`STRIP`)."""
        return STRIP.from_unit(self.predict_unit(stem_feats, mix_feats, roles, reference_feats))


def select_outputs(patterns: Sequence[str] | None) -> list[str]:
    """The channel-strip parameter names (:data:`STRIP` order) matching ``patterns`` (``fnmatch``
    style: ``pan``, ``comp.*``); every name when ``patterns`` is None. ModelError for a pattern
    that matches nothing (a typo would otherwise leave a member silently unused)."""
    from fnmatch import fnmatchcase

    if patterns is None:
        return list(STRIP.names)
    if isinstance(patterns, str):
        patterns = [patterns]
    chosen: set[str] = set()
    for pattern in patterns:
        hits = {name for name in STRIP.names if fnmatchcase(name, str(pattern))}
        if not hits:
            raise ModelError(f"{pattern!r} names no channel-strip parameter (they are: {', '.join(STRIP.names)})")
        chosen |= hits
    return [name for name in STRIP.names if name in chosen]


def output_weights(member_outputs: Sequence[Sequence[str] | None] | None, n_members: int) -> np.ndarray:
    """(members, P) float32 averaging weights: member ``m`` gives parameter ``p`` when ``p`` is in
    its ``member_outputs[m]`` (None: every parameter); each column sums to 1.

    ModelError when the lists do not match the members or some parameter has no member.
    """
    if member_outputs is None:
        member_outputs = [None] * n_members
    member_outputs = list(member_outputs)
    if len(member_outputs) != n_members:
        raise ModelError(f"the ensemble lists outputs for {len(member_outputs)} members but has {n_members}")
    given = np.zeros((n_members, STRIP.size), _F32)
    for m, names in enumerate(member_outputs):
        for name in select_outputs(names):
            given[m, STRIP.index(name)] = 1.0
    counts = given.sum(0)
    if (counts == 0).any():
        missing = [n for n, c in zip(STRIP.names, counts) if c == 0]
        raise ModelError(f"no member of the ensemble sets {', '.join(missing)}")
    return given / counts


def residual_weights(member_residual: Sequence[Sequence[str] | None] | None, n_members: int,
                     weights: np.ndarray) -> np.ndarray | None:
    """(members, P) float32 0/1 matrix: member ``m`` adds its output to parameter ``p`` (on the
    [0, 1] scale, relative to its middle 0.5: a gain in dB over a symmetric range adds its dB)
    when ``p`` is in ``member_residual[m]``; None when no member adds anything.

    ``weights`` are :func:`output_weights`: a parameter a member adds to must be given by some
    other member (the sum starts there), and no member both gives and adds one parameter.
    ModelError otherwise.
    """
    if member_residual is None:
        return None
    member_residual = list(member_residual)
    if len(member_residual) != n_members:
        raise ModelError(f"the ensemble lists added outputs for {len(member_residual)} members but has {n_members}")
    added = np.zeros((n_members, STRIP.size), _F32)
    for m, names in enumerate(member_residual):
        for name in select_outputs(names) if names else []:
            p = STRIP.index(name)
            if weights[m, p] > 0:
                raise ModelError(f"member {m} of the ensemble both sets and adds {name}")
            added[m, p] = 1.0
    if not added.any():
        return None
    return added


def combine_units(units, weights: np.ndarray, added: np.ndarray | None, xp=np):
    """The ensemble's [0, 1] outputs from its members' ``units`` ``[M, ..., P]`` (numpy or torch,
    ``xp`` the module): per parameter the weighted mean of the members that give it, plus
    ``unit - 0.5`` of every member that adds to it (clipped to [0, 1])."""
    mean = xp.einsum("m...p,mp->...p", units, weights)
    if added is None:
        return mean
    total = mean + xp.einsum("m...p,mp->...p", units - 0.5, added)
    return xp.clip(total, 0.0, 1.0) if xp is np else total.clamp(0.0, 1.0)


class ArrayMixEnsemble:
    """Members' [0, 1] outputs averaged, as :class:`automix.model.mixnet.MixEnsemble` (per
    parameter over the members that give it, ``member_outputs``)."""

    def __init__(self, members: Sequence[ArrayMixModel], member_outputs: Sequence[Sequence[str] | None] | None = None,
                 member_residual: Sequence[Sequence[str] | None] | None = None):
        self.members = list(members)
        if not self.members:
            raise ModelError("an ensemble needs at least one model")
        self.member_outputs = None if member_outputs is None else [
            None if names is None else list(names) for names in member_outputs]
        self.weights = output_weights(self.member_outputs, len(self.members))
        self.added = residual_weights(member_residual, len(self.members), self.weights)

    @property
    def config(self) -> dict[str, Any]:
        return self.members[0].config

    def predict_unit(self, stem_feats, mix_feats, roles, reference_feats=None) -> np.ndarray:
        units = [m.predict_unit(stem_feats, mix_feats, roles, reference_feats) for m in self.members]
        if self.member_outputs is None and self.added is None:
            return np.stack(units).mean(0, dtype=_F32)
        return combine_units(np.stack(units), self.weights, self.added).astype(_F32)

    predict = ArrayMixModel.predict


def load_array_model(path: str | Path | None = None) -> tuple[ArrayMixModel | ArrayMixEnsemble, dict[str, Any]]:
    """An :class:`ArrayMixModel` or :class:`ArrayMixEnsemble` and the checkpoint's ``info``, from a
    checkpoint (default :data:`DEFAULT_MODEL_PATH`), without torch.

    Raises
    ------
    ModelError
        Missing, corrupt or incompatible checkpoint (the same messages as
        :func:`automix.model.checkpoint.load_model`).
    """
    from automix.weights import read_weight_arrays

    path = Path(path) if path is not None else DEFAULT_MODEL_PATH
    payload = check_checkpoint(path, read_weight_arrays(path, "mix-model", CHECKPOINT_HINT))
    try:
        states = payload["members"] if "members" in payload else [payload["state_dict"]]
        if not isinstance(states, list) or not states:
            raise ValueError("its list of ensemble members is empty")
        config = payload["model_config"]
        if not isinstance(config, dict):
            raise ValueError("it has no model configuration")
        members = [ArrayMixModel(state, config, str(path)) for state in states]
        model = ArrayMixEnsemble(members, payload.get("member_outputs"), payload.get("member_residual")) if "members" in payload else members[0]
    except (TypeError, KeyError, ValueError) as exc:
        raise ModelError(f"{path} does not match this automix's mix-model architecture: {exc}") from None
    info = payload.get("info", {})
    return model, dict(info) if isinstance(info, dict) else {}
