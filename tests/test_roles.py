"""Roles from the file names engineers actually give their stems (abbreviations included).

The role picks the model's role embedding and the group trim (``--vocals``, ``--drums`` ...)
a stem gets, so a backing vocal named ``bgvox_bop.wav`` must not end up as "other".
"""
import pytest

from automix.model.roles import ROLES, group_of_role, role_from_name

TABLE = [
    # backing vocals
    ("bgvox_alt_outro.wav", "backing_vocals"), ("bgvox_bop.wav", "backing_vocals"), ("BGVox 2.wav", "backing_vocals"),
    ("bvox.wav", "backing_vocals"), ("Bvox_L.wav", "backing_vocals"), ("bv 1.wav", "backing_vocals"),
    ("BV_high.wav", "backing_vocals"), ("bgv.wav", "backing_vocals"), ("BGVs.wav", "backing_vocals"),
    ("bkg vox.wav", "backing_vocals"), ("harm vox 3.wav", "backing_vocals"), ("Backing Vocals.wav", "backing_vocals"),
    ("Choir.wav", "backing_vocals"), ("bvx.wav", "backing_vocals"),
    # lead vocals
    ("vox.wav", "vocals"), ("Ld Vox.wav", "vocals"), ("ld.wav", "vocals"), ("LeadVox.wav", "vocals"),
    ("lead vocal.wav", "vocals"), ("Main Vox.wav", "vocals"), ("vox dbl.wav", "vocals"), ("Vocal.wav", "vocals"),
    # drums
    ("kik.wav", "kick"), ("Kick In.wav", "kick"), ("Kick Out.wav", "kick"), ("kick sub.wav", "kick"),
    ("sub kick.wav", "kick"), ("sn top.wav", "snare"), ("SN btm.wav", "snare"), ("snr.wav", "snare"),
    ("Snare Bottom.wav", "snare"), ("oh L.wav", "cymbals"), ("Overheads.wav", "cymbals"), ("hh.wav", "cymbals"),
    ("Hat.wav", "cymbals"), ("ride.wav", "cymbals"), ("cym.wav", "cymbals"), ("rm.wav", "drums"),
    ("Room L.wav", "drums"), ("rooms.wav", "drums"), ("tom 1.wav", "drums"), ("Floor Tom.wav", "drums"),
    ("ftom.wav", "drums"), ("perc.wav", "percussion"), ("Shaker.wav", "percussion"), ("tamb.wav", "percussion"),
    # bass
    ("Bass DI.wav", "bass"), ("bass amp.wav", "bass"), ("sub.wav", "bass"), ("Synth Bass.wav", "bass"),
    ("syn bass.wav", "bass"),
    # guitars
    ("gtr.wav", "guitar"), ("ac gtr.wav", "guitar"), ("AcGtr.wav", "guitar"), ("eg 1.wav", "guitar"),
    ("EG2.wav", "guitar"), ("ag.wav", "guitar"), ("elec gtr.wav", "guitar"), ("Lead Gtr.wav", "guitar"),
    ("ld gtr.wav", "guitar"), ("gtr solo.wav", "guitar"), ("acoustic.wav", "guitar"),
    # keys, synths, strings, brass, fx
    ("pno.wav", "keys"), ("keys.wav", "keys"), ("Rhodes.wav", "keys"), ("Acoustic Grand Piano.wav", "keys"),
    ("syn.wav", "synth"), ("synth.wav", "synth"), ("str.wav", "strings"), ("strings.wav", "strings"),
    ("String Ensemble.wav", "strings"), ("brs.wav", "brass"), ("brass.wav", "brass"), ("horns.wav", "brass"),
    ("fx.wav", "fx"), ("sfx.wav", "fx"), ("FX riser.wav", "fx"), ("Lead.wav", "lead"), ("pad.wav", "pad"),
    # words that merely contain an abbreviation are not hits
    ("obvious.wav", "other"), ("abv.wav", "other"), ("strum.wav", "other"), ("snack.wav", "other"),
    ("hhhh.wav", "other"), ("main.wav", "other"), ("track01.wav", "other"), ("roomba.wav", "other"),
    ("strange.wav", "other"), ("subtle.wav", "other"),
]


@pytest.mark.parametrize("name, role", TABLE)
def test_engineer_names_map_to_their_role(name, role):
    assert ROLES[role_from_name(name)] == role


def test_backing_vocals_are_trimmed_with_the_vocals():
    assert group_of_role(role_from_name("bgvox_bop.wav")) == "vocals"
    assert group_of_role(role_from_name("rm.wav")) == "drums"


def test_role_ids_the_shipped_weights_use_are_unchanged():
    # the model's role embedding is indexed by these ids: never renumber or remove a role
    assert ROLES == ("other", "kick", "snare", "cymbals", "drums", "percussion", "bass", "guitar", "keys",
                     "organ", "synth", "lead", "pad", "strings", "brass", "woodwinds", "vocals",
                     "backing_vocals", "fx")
