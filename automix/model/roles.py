"""Instrument roles guessed from stem file names.

The mix model embeds each stem's role (kick, bass, vocals...) next to its audio
features; the role also decides which group trim (vocals, bass, drums, music, fx)
applies to a stem. Roles come from the file name because that is what a musician's
export carries ("03 Kick In.wav", "Lead Vox.flac", "ch10_drums.wav"); a stem whose
name says nothing gets ``"other"`` and the model relies on its audio features alone.
"""
from __future__ import annotations

import re
from pathlib import Path

#: Every role the model knows, in embedding order. Index 0 is the fallback.
ROLES: tuple[str, ...] = (
    "other",
    "kick",
    "snare",
    "cymbals",
    "drums",
    "percussion",
    "bass",
    "guitar",
    "keys",
    "organ",
    "synth",
    "lead",
    "pad",
    "strings",
    "brass",
    "woodwinds",
    "vocals",
    "backing_vocals",
    "fx",
)

#: Group trims a user can apply (``--vocals -2`` ...), and the roles each covers.
GROUPS: tuple[str, ...] = ("vocals", "bass", "drums", "music", "fx")

_GROUP_OF_ROLE: dict[str, str] = {
    "kick": "drums",
    "snare": "drums",
    "cymbals": "drums",
    "drums": "drums",
    "percussion": "drums",
    "bass": "bass",
    "vocals": "vocals",
    "backing_vocals": "vocals",
    "fx": "fx",
}

# Keyword patterns, tried in order; the first that matches a token decides. Order
# matters: "bass drum" is a kick, "synth bass" is bass, "backing vocal" is not lead.
_PATTERNS: tuple[tuple[str, str], ...] = (
    ("kick", r"kick|kik|kck|kicks|bass ?drum|bd|bassdrum|808 ?kick|sub ?kick"),
    ("snare", r"snare|snares|snr|sn|sd|rim ?shot|rimshot|clap|handclap"),
    ("cymbals", r"hi ?hats?|hh|hats?|cymbals?|cyms?|ride|crash|splash|china|oh|ohs|overheads?"),
    ("backing_vocals", r"(backing|bgv|bgvs|bv|bvs|backs?|harmony|harmonies|choir|choirs|aahs?|oohs?|voice ?oohs?)( ?vox| ?vocals?)?"
                       r"|(bg|bgd|bkg|bkgd|bck|bk|back|harm|harms|stack)( ?vox| ?vocals?| ?voc| ?vx)|bvox|bvx|bgvx"),
    ("vocals", r"vox|vocals?|voc|vx|voice|singer|(lead|ld|main) ?(vox|vocals?|voc|vx)|rap|spoken|speech|sing(ing)?"),
    ("bass", r"bass|sub ?bass|subbass|sub|bs|bss|contrabass|double ?bass|upright|808"),
    ("drums", r"drums?|drum ?kit|kit|drumkit|toms?|ftom|rtom|floor ?tom|rack ?tom|rm|rooms?|room ?mics?|beat|breaks?|loop|standard ?kit|ch ?10|channel ?10|percussion ?kit"),
    ("percussion", r"perc(ussion)?|percs|mallets?|shakers?|vibes|tamb(ourine)?|conga|bongo|cowbell|timbale|timpani|triangle|clave|woodblock|agogo|cabasa|guiro|maracas|steel ?drums?|taiko|marimba|xylophone|vibraphone|glockenspiel|tubular ?bells|celesta|music ?box|kalimba"),
    ("guitar", r"gtr|guitars?|gtrs?|gtr ?solo|eg|egtr|ag|agtr|acgtr|ac ?gtr|elec ?gtr|e ?gtr|electric ?guitar|acoustic ?guitar|distortion|overdrive|overdriven|banjo|mandolin|ukulele|sitar|harp|koto|shamisen|lute|nylon|steel"),
    ("organ", r"organ|hammond|b3|church ?organ|reed ?organ|accordion|harmonica|bandoneon"),
    ("keys", r"keys|key|keyboards?|kbd|piano|pno|e ?pno|rhodes|wurli(tzer)?|e ?piano|epiano|clav(inet)?|harpsichord|grand|honky ?tonk"),
    ("pad", r"pads?|warm|atmo(sphere)?|ambien(t|ce)|drone|halo|sweep|new ?age"),
    ("lead", r"leads?|solo|melody|square|sawtooth|saw|calliope|chiff|charang|fifths"),
    ("synth", r"synths?|syn|syns|arp|arps|pluck|plucks|seq|sequence|chip|chiptune|fm|polysynth|bell|bells|stab|stabs|tb ?303|303|moog|sid|nes"),
    ("strings", r"strings?|str|violins?|vln|violas?|cellos?|vc|orchestra|orchestral|ensemble|pizz(icato)?|tremolo|fiddle"),
    ("brass", r"brass|brs|trumpets?|tpts?|trombones?|tbns?|tuba|horns?|hrns|french ?horn|sax(ophone)?|alto|tenor|baritone|soprano ?sax"),
    ("woodwinds", r"reeds?|flutes?|fl|piccolo|clarinets?|oboe|bassoon|english ?horn|recorder|pan ?flute|whistle|ocarina|shakuhachi|bagpipe|shanai|winds?|woodwinds?|blown ?bottle"),
    ("fx", r"fx|sfx|effects?|noise|riser|impact|whoosh|reverse|rev|foley|gunshot|helicopter|applause|seashore|bird|telephone|breath|fret ?noise|rain|thunder|wind ?fx|crystal|goblins?|echoes|sci ?fi|atmos"),
)

# Words that name a role only when nothing else in the name does: "ld" is a lead vocal, but
# "ld gtr" a guitar; "acoustic" alone is an acoustic guitar, but "acoustic piano" keys.
_WEAK_PATTERNS: tuple[tuple[str, str], ...] = (
    ("vocals", r"ld"),
    ("guitar", r"acoustic|ac|electric|elec|dist"),
)

_COMPILED = tuple((role, re.compile(rf"^(?:{pat})$")) for role, pat in _PATTERNS)
_WEAK_COMPILED = tuple((role, re.compile(rf"^(?:{pat})$")) for role, pat in _WEAK_PATTERNS)
_SPLIT = re.compile(r"[^a-z0-9]+|(?<=[a-z])(?=[0-9])|(?<=[0-9])(?=[a-z])")


def _tokens(name: str) -> list[str]:
    """Lower-case words of a file name, camelCase and digits split off."""
    stem = Path(name).name
    for suffix in (".stem", ".wav", ".flac", ".aif", ".aiff", ".ogg", ".mp3", ".opus", ".m4a", ".mp4"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    stem = re.sub(r"(?<=[a-z])(?=[A-Z])", " ", stem)  # LeadVox -> Lead Vox
    return [t for t in _SPLIT.split(stem.lower()) if t]


def role_from_name(filename: str | Path) -> int:
    """Guess a stem's role from its file name.

    Parameters
    ----------
    filename : str or Path
        File name or path ("07 Snare Top.wav", "/x/song/LeadVox.flac").

    Returns
    -------
    int
        Index into :data:`ROLES`; 0 (``"other"``) when nothing matches.
    """
    tokens = _tokens(str(filename))
    # Two-word phrases first ("bass drum", "lead vocal", "hi hat"), then single words.
    candidates = [f"{a} {b}" for a, b in zip(tokens, tokens[1:])] + tokens
    joined = "".join(tokens)
    if joined:
        candidates.append(joined)
    for table in (_COMPILED, _WEAK_COMPILED):
        for role, pattern in table:
            if any(pattern.match(c) for c in candidates):
                return ROLES.index(role)
    return 0


def role_name(index: int) -> str:
    """Name of role ``index`` (see :data:`ROLES`)."""
    return ROLES[index]


def group_of_role(role: int | str) -> str:
    """The trim group (one of :data:`GROUPS`) a role belongs to."""
    name = ROLES[role] if isinstance(role, int) else role
    if name not in ROLES:
        raise ValueError(f"unknown role {name!r}")
    return _GROUP_OF_ROLE.get(name, "music")
