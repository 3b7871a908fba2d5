"""The mix model: stems in, one channel strip of settings per stem out.

Signal flow inside :class:`MixModel`::

    stems [B,S,C,T] --features--> per-stem vectors --encoder--> tokens [B,S,D]
    sum of stems    --features--> mix token      \\
    reference mix   --features--> reference token -> masked self-attention over
                                                    (stems + mix + reference), no positions
    tokens --head--> sigmoid [B,S,P] --STRIP.from_unit--> strip values [B,S,P]

There are no positional encodings, so permuting the stems permutes the outputs the same
way (permutation equivariance) and any number of stems (1 to :data:`MAX_STEMS`) works;
padding stems are excluded through ``mask``. The output heads start at the console's
neutral settings, so an untrained model leaves the audio (almost) untouched.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from automix.dsp.params import STRIP
from automix.model.features import N_FEATURES, audio_features, stem_features
from automix.model.roles import ROLES
from automix.stems_reader import MAX_STEMS  # noqa: F401 - declared where stems are read

# UNIT_MARGIN (initial outputs kept this far inside [0, 1]) and the pair-spread constants are
# declared once, torch-free, beside the numpy inference of this model (automix.model.inference)
from automix.model.inference import INITIAL_SPREAD_LOGIT as _INITIAL_SPREAD_LOGIT  # noqa: E402
from automix.model.inference import MAX_PAIR_SPREAD, UNIT_MARGIN  # noqa: E402,F401
from automix.model.inference import NO_SPREAD_LOGIT as _NO_SPREAD_LOGIT  # noqa: E402
from automix.model.inference import combine_units, output_weights, residual_weights, select_outputs  # noqa: E402


@dataclass(frozen=True)
class MixModelConfig:
    """Architecture of :class:`MixModel` (stored in checkpoints).

    Parameters
    ----------
    d_model : int
        Width of the stem tokens.
    n_heads : int
        Attention heads per layer.
    n_layers : int
        Attention layers across stems.
    role_dim : int
        Size of the instrument-role embedding.
    dropout : float
        Dropout inside the attention layers (training only).
    """

    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    role_dim: int = 16
    dropout: float = 0.0


@dataclass
class MixFeatures:
    """What the model reads, computed by :meth:`MixModel.analyse`.

    Attributes
    ----------
    stems : Tensor ``[B, S, N_FEATURES + 1]``
    mix : Tensor ``[B, N_FEATURES]`` (features of the sum of the stems)
    reference : Tensor ``[B, N_FEATURES]`` or None (features of a reference mix)
    """

    stems: torch.Tensor
    mix: torch.Tensor
    reference: torch.Tensor | None = None



def role_parity(roles: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """``[B, S]`` +1 / -1 alternately over the stems that share a role, in the stems' order
    (first guitar +1, second -1, third +1 ...); 0 for a stem alone in its role or padding.

    Two parts of one role usually sit on opposite sides of a mix, but nothing in their
    sound says which goes where; this sign is the tie-breaker (the stems' order comes from
    their file names: ``guitar_1`` before ``guitar_2``).
    """
    B, S = roles.shape
    real = torch.ones(B, S, dtype=torch.bool, device=roles.device) if mask is None else mask.bool()
    same = (roles[:, :, None] == roles[:, None, :]) & real[:, :, None] & real[:, None, :]
    earlier = torch.tril(same, diagonal=-1).sum(-1)  # same-role stems before this one
    count = same.sum(-1)
    sign = 1.0 - 2.0 * (earlier % 2).float()
    return torch.where((count > 1) & real, sign, torch.zeros_like(sign))


def _mlp(n_in: int, n_hidden: int, n_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, n_hidden), nn.GELU(), nn.Linear(n_hidden, n_out))


class MixModel(nn.Module):
    """Predicts per-stem channel-strip settings (:data:`automix.dsp.params.STRIP`).

    Parameters
    ----------
    config : MixModelConfig, optional
        Architecture; keyword arguments override its fields.
    """

    def __init__(self, config: MixModelConfig | None = None, **overrides):
        super().__init__()
        config = MixModelConfig(**{**asdict(config or MixModelConfig()), **overrides})
        self.config = config
        d = config.d_model
        n_stem_in = N_FEATURES + 1
        self.role_embedding = nn.Embedding(len(ROLES), config.role_dim)
        self.stem_encoder = _mlp(n_stem_in + config.role_dim + N_FEATURES, 2 * d, d)
        self.mix_encoder = _mlp(N_FEATURES, 2 * d, d)
        self.reference_encoder = _mlp(2 * N_FEATURES, 2 * d, d)
        self.no_reference = nn.Parameter(torch.zeros(d))
        self.token_type = nn.Parameter(torch.randn(3, d) * 0.02)  # stem, mix, reference
        # added to the tokens of stems that share their role with others, +/- alternately in
        # the stems' order (see role_parity): lets two guitars go to opposite sides
        self.pair_side = nn.Parameter(torch.zeros(d))
        layer = nn.TransformerEncoderLayer(
            d, config.n_heads, 2 * d, config.dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.context = nn.TransformerEncoder(layer, config.n_layers, enable_nested_tensor=False)
        self.out_norm = nn.LayerNorm(d)
        self.head = _mlp(d, d, STRIP.size)
        # how far apart (pan units) the parts of one role go: every such stem's pan moves by
        # +/- spread / 2 (its role_parity sign), so two guitars leave the centre in opposite
        # directions without the model having to learn the sign from their (alike) sound.
        # Plain parameters (no random init drawn): models built before it stay the same.
        self.spread_weight = nn.Parameter(torch.zeros(d))
        self.spread_bias = nn.Parameter(torch.full((), _INITIAL_SPREAD_LOGIT))
        self.reset_heads()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # checkpoints from before the pair-side embedding load as "no pair knowledge" (zeros)
        key = prefix + "pair_side"
        if key not in state_dict:
            state_dict[key] = torch.zeros_like(self.pair_side)
        # ... and before the spread head: no spread, so an old model mixes exactly as it did
        # (fine-tuning such a checkpoint starts the pairs together; reset the bias to start apart)
        if prefix + "spread_weight" not in state_dict:
            state_dict[prefix + "spread_weight"] = torch.zeros_like(self.spread_weight)
            state_dict[prefix + "spread_bias"] = torch.full_like(self.spread_bias, _NO_SPREAD_LOGIT)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    # ------------------------------------------------------------------ init
    @torch.no_grad()
    def reset_heads(self) -> None:
        """Start every output at the console's neutral setting (pulled UNIT_MARGIN inside the range)."""
        last = self.head[-1]
        nn.init.normal_(last.weight, std=1e-3)
        unit = STRIP.to_unit(STRIP.neutral.double()).clamp(UNIT_MARGIN, 1 - UNIT_MARGIN)
        last.bias.copy_(torch.logit(unit).float())
        self.start_pair_spread()

    @torch.no_grad()
    def start_pair_spread(self) -> None:
        """Put the pair-spread head at its starting point (pairs 0.6 apart), e.g. to fine-tune a
        checkpoint from before the head existed (which loads with no spread and no gradient)."""
        self.spread_weight.zero_()
        self.spread_bias.fill_(_INITIAL_SPREAD_LOGIT)

    # ------------------------------------------------------------------ analysis
    def analyse(
        self,
        stems: torch.Tensor,
        sample_rate: int,
        mask: torch.Tensor | None = None,
        reference: torch.Tensor | None = None,
    ) -> MixFeatures:
        """Features of the stems, their sum and an optional reference mix.

        Parameters
        ----------
        stems : Tensor ``[B, S, C, T]``
        sample_rate : int
            Hz (any; windows are sized in ms, bands in Hz).
        mask : Tensor ``[B, S]`` bool, optional
            True for real stems.
        reference : Tensor ``[B, C, T_ref]``, optional
            A mix whose balance and tone the result should follow (any length).
        """
        with torch.no_grad():
            stem_feats, mix_feats = stem_features(stems, sample_rate, mask)
            ref_feats = None if reference is None else audio_features(reference, sample_rate)
        return MixFeatures(stem_feats, mix_feats, ref_feats)

    # ------------------------------------------------------------------ prediction
    def predict_unit(self, features: MixFeatures, roles: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Sigmoid outputs ``[B, S, P]`` in [0, 1] from precomputed :class:`MixFeatures`."""
        stem_feats = features.stems
        B, S, _ = stem_feats.shape
        if mask is None:
            mask = torch.ones(B, S, dtype=torch.bool, device=stem_feats.device)
        roles = roles.clamp(0, len(ROLES) - 1)
        mix = features.mix
        stem_in = torch.cat([stem_feats, self.role_embedding(roles), mix.unsqueeze(1).expand(B, S, -1)], -1)
        tokens = self.stem_encoder(stem_in) + self.token_type[0]
        tokens = tokens + role_parity(roles, mask).to(tokens.dtype)[..., None] * self.pair_side
        mix_token = self.mix_encoder(mix) + self.token_type[1]
        if features.reference is None:
            ref_token = self.no_reference.expand(B, -1)
        else:
            ref = features.reference
            ref_token = self.reference_encoder(torch.cat([ref, ref - mix], -1))
        ref_token = ref_token + self.token_type[2]
        sequence = torch.cat([tokens, mix_token.unsqueeze(1), ref_token.unsqueeze(1)], 1)
        pad = torch.cat([~mask, torch.zeros(B, 2, dtype=torch.bool, device=mask.device)], 1)
        hidden = self.out_norm(self.context(sequence, src_key_padding_mask=pad)[:, :S])
        unit = torch.sigmoid(self.head(hidden))
        # pair spread: the pan (unit 0.5 = centre; pan = 2 unit - 1) of every stem that shares its
        # role moves by +/- spread / 2 (its role_parity sign): the pair ends `spread` apart
        spread = MAX_PAIR_SPREAD * torch.sigmoid(hidden @ self.spread_weight + self.spread_bias)  # pan units
        i = STRIP.index("pan")
        pan_unit = (unit[..., i] + 0.25 * role_parity(roles, mask).to(unit.dtype) * spread).clamp(0.0, 1.0)
        return torch.cat([unit[..., :i], pan_unit[..., None], unit[..., i + 1:]], -1)

    def predict(self, features: MixFeatures, roles: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Strip values ``[B, S, P]`` (units of :data:`STRIP`) from precomputed features.

        Pans are not re-centred per mix (that coupled them: a guitar pair leaning right pushed
        the drums left); the mix's own left/right balance is a training loss instead.
        """
        return STRIP.from_unit(self.predict_unit(features, roles, mask))

    def forward(
        self,
        stems: torch.Tensor,
        sample_rate: int,
        roles: torch.Tensor,
        mask: torch.Tensor | None = None,
        reference: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predict channel-strip settings for every stem.

        Parameters
        ----------
        stems : Tensor ``[B, S, C, T]``
            Stem audio, C = 1 or 2, any sample rate.
        sample_rate : int
            Hz.
        roles : Tensor ``[B, S]`` long
            Indices into :data:`automix.model.roles.ROLES`.
        mask : Tensor ``[B, S]`` bool, optional
            True for real stems, False for padding (their outputs are meaningless).
        reference : Tensor ``[B, C, T_ref]``, optional
            Reference mix to follow.

        Returns
        -------
        Tensor ``[B, S, P]``
            Strip values in the units of :data:`automix.dsp.params.STRIP`.
        """
        if stems.dim() != 4:
            raise ValueError(f"stems must be [batch, stems, channels, samples], got shape {tuple(stems.shape)}")
        return self.predict(self.analyse(stems, sample_rate, mask, reference), roles, mask)

    def num_parameters(self) -> int:
        """Number of trainable weights."""
        return sum(p.numel() for p in self.parameters() if p.requires_grad)


class MixEnsemble(nn.Module):
    """Several :class:`MixModel` fits of the same architecture whose predictions are averaged.

    Fits that differ only in their random seed disagree by a few tenths of an LU per song
    (the training songs are few); averaging their outputs removes part of that noise. The
    average is taken on the models' [0, 1] output scale (:meth:`MixModel.predict_unit`):
    linear parameters such as gains average in their own units, log-scaled ones such as
    frequencies geometrically. Features are the same for every member (they have no
    weights), so they are computed once.

    Parameters
    ----------
    members : sequence of MixModel
        At least one; all with the same :class:`MixModelConfig`.
    member_outputs : sequence of (list of str or None), optional
        Per member, the strip parameters it gives (``fnmatch`` patterns such as ``pan``,
        ``comp.*``; None: all). Each parameter is the mean over the members that give it.
        A member trained for some parameters only (e.g. pans and compressors learned through
        the console on top of a feature-space fit's faders and EQ, :func:`strip_on_fit`)
        then sets exactly those. Default: every member gives every parameter.
    member_residual : sequence of (list of str or None), optional
        Per member, the strip parameters it *adds* to what the others give, on the [0, 1]
        scale relative to its middle (``unit - 0.5``: over a symmetric dB range such as an EQ
        band's gain that is a gain in dB added to the others'), the sum clipped to [0, 1].
        E.g. EQ learned through the console as a correction of a fit's EQ
        (:func:`strip_on_fit` ``add``). Default: no member adds anything.
    """

    def __init__(self, members, member_outputs=None, member_residual=None):
        super().__init__()
        members = list(members)
        if not members:
            raise ValueError("an ensemble needs at least one model")
        if any(m.config != members[0].config for m in members):
            raise ValueError("every member of an ensemble must have the same architecture")
        self.members = nn.ModuleList(members)
        self.member_outputs = None if member_outputs is None else [
            None if names is None else select_outputs(names) for names in member_outputs]
        weights = output_weights(self.member_outputs, len(members))
        added = residual_weights(member_residual, len(members), weights)
        self.member_residual = None if added is None else [
            [name for name, a in zip(STRIP.names, row) if a] for row in added]
        self.register_buffer("output_weights", torch.from_numpy(weights), persistent=False)
        self.register_buffer("added_weights", None if added is None else torch.from_numpy(added), persistent=False)

    @property
    def config(self) -> MixModelConfig:
        return self.members[0].config

    def analyse(self, stems: torch.Tensor, sample_rate: int, mask: torch.Tensor | None = None,
                reference: torch.Tensor | None = None) -> MixFeatures:
        """:meth:`MixModel.analyse` (the same for every member)."""
        return self.members[0].analyse(stems, sample_rate, mask, reference)

    def predict_unit(self, features: MixFeatures, roles: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Mean of the members' [0, 1] outputs ``[B, S, P]`` (per parameter over the members that give it).

        Members without trainable weights (frozen, e.g. the feature-space fit under
        :func:`strip_on_fit`) run without autograd."""
        units = []
        for m in self.members:
            if any(p.requires_grad for p in m.parameters()) and torch.is_grad_enabled():
                units.append(m.predict_unit(features, roles, mask))
            else:
                with torch.no_grad():
                    units.append(m.predict_unit(features, roles, mask))
        stacked = torch.stack(units)
        if self.member_outputs is None and self.added_weights is None:
            return stacked.mean(0)
        added = None if self.added_weights is None else self.added_weights.to(stacked.dtype)
        return combine_units(stacked, self.output_weights.to(stacked.dtype), added, xp=torch)

    def train(self, mode: bool = True):
        """Frozen members (no trainable weights) stay in eval mode (no dropout) while the rest trains."""
        super().train(mode)
        for m in self.members:
            if not any(p.requires_grad for p in m.parameters()):
                m.eval()
        return self

    predict = MixModel.predict
    forward = MixModel.forward
    num_parameters = MixModel.num_parameters


#: What :func:`strip_on_fit` trains through the console by default: placement, compressor and
#: saturation (the feature-space fit leaves them at rest); faders and EQ stay the fit's.
CONSOLE_OUTPUTS = ("pan", "comp.*", "sat.*")


def strip_on_fit(fit: str, learn=CONSOLE_OUTPUTS, warm_start: bool = True, add=()) -> MixEnsemble:
    """A model for console training on top of a feature-space fit (``automix.model.fit_inverse``).

    The fit's members (``fit``: a checkpoint, e.g. ``models/mixer_fit.pt``) are frozen and
    keep giving every parameter not in ``learn``; one new trainable :class:`MixModel` of the
    same architecture gives the ``learn`` parameters (patterns, :data:`CONSOLE_OUTPUTS` by
    default). With ``warm_start`` the new member starts as a copy of the fit's first member
    (its features and attention already know the stems; its ``learn`` outputs start where
    the fit leaves them, at rest) with the pair-spread head at its start (pairs of one role
    0.6 apart); otherwise from a fresh initialisation.

    ``add`` (patterns, default none; not in ``learn``) names parameters the new member
    *corrects* instead of replacing: the fit keeps giving them and the new member's output
    is added (:class:`MixEnsemble` ``member_residual``), starting at zero (its head rows for
    them zeroed: ``unit`` 0.5). ``add=["eq.*.gain_db"]`` lets console training reshape the
    fit's EQ (the tone raw-like stems need) while the fit's own correction of scrambled stems
    (the tilt it was fitted to undo) stays in place.

    The result is a :class:`MixEnsemble` with ``member_outputs``; saved with
    :func:`automix.model.checkpoint.save_checkpoint` it loads as the same model for
    ``automix mix``. Hydra: ``model=strip_on_fit`` (configs/model/strip_on_fit.yaml).
    """
    import copy

    from automix.model.checkpoint import load_model

    base, _ = load_model(fit)
    if isinstance(base, MixEnsemble) and base.member_outputs is not None:
        raise ValueError(f"{fit} already has members for some parameters only; give the feature-space fit itself")
    base_members = list(base.members) if isinstance(base, MixEnsemble) else [base]
    for member in base_members:
        member.requires_grad_(False)
    if warm_start:
        learner = copy.deepcopy(base_members[0])
        learner.start_pair_spread()
    else:
        learner = MixModel(base_members[0].config)
    learner.requires_grad_(True)
    learned = select_outputs(learn)
    added = select_outputs(list(add)) if add else []
    if set(added) & set(learned):
        raise ValueError(f"{', '.join(sorted(set(added) & set(learned)))}: in both learn and add")
    rest = [name for name in STRIP.names if name not in learned]
    if not rest:
        raise ValueError("learn names every parameter: nothing would come from the fit")
    if added and warm_start:
        with torch.no_grad():
            last = learner.head[-1]
            for name in added:
                last.weight[STRIP.index(name)].zero_()
                last.bias[STRIP.index(name)] = 0.0  # sigmoid 0.5: adds nothing
    model = MixEnsemble([*base_members, learner], [rest] * len(base_members) + [learned],
                        None if not added else [[]] * len(base_members) + [added])
    model.train()
    return model
