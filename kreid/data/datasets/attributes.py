"""Attribute annotations: PETA ``Label.txt`` and Market/Duke attribute ``.mat`` files.

Every reader returns ``(names, table)`` where ``table`` maps an identity (int)
to an int vector aligned with ``names``.
"""

from __future__ import annotations

import os

import numpy as np

from kreid.errors import DatasetLayoutError

# PETA: the 61 binary attributes in the order of PETA's ReadMe (indices 2..65
# without the discarded 1, 3, 34, 36), then 4 multi-class colour attributes.
PETA_BINARY = (
    "accessoryHeadphone personalLess15 personalLess30 personalLess45 personalLess60 "
    "personalLarger60 carryingBabyBuggy carryingBackpack hairBald footwearBoots "
    "lowerBodyCapri carryingOther carryingShoppingTro carryingUmbrella lowerBodyCasual "
    "upperBodyCasual personalFemale carryingFolder lowerBodyFormal upperBodyFormal "
    "accessoryHairBand accessoryHat lowerBodyHotPants upperBodyJacket lowerBodyJeans "
    "accessoryKerchief footwearLeatherShoes upperBodyLogo hairLong lowerBodyLongSkirt "
    "upperBodyLongSleeve lowerBodyPlaid lowerBodyThinStripes carryingLuggageCase "
    "personalMale carryingMessengerBag accessoryMuffler accessoryNothing carryingNothing "
    "upperBodyNoSleeve upperBodyPlaid carryingPlasticBags footwearSandals footwearShoes "
    "hairShort lowerBodyShorts upperBodyShortSleeve lowerBodyShortSkirt footwearSneaker "
    "footwearStocking upperBodyThinStripes upperBodySuit carryingSuitcase lowerBodySuits "
    "accessorySunglasses upperBodySweater upperBodyThickStripes lowerBodyTrousers "
    "upperBodyTshirt upperBodyOther upperBodyVNeck").split()
PETA_COLOUR_PARTS = ("footwear", "hair", "lowerBody", "upperBody")
PETA_COLOURS = ("Black", "Blue", "Brown", "Green", "Grey", "Orange", "Pink", "Purple",
                "Red", "White", "Yellow")
PETA_NAMES = tuple(PETA_BINARY) + tuple(p + "Color" for p in PETA_COLOUR_PARTS)
# Spellings found in the label files that differ from the ReadMe, and the
# attributes PETA's ReadMe says were discarded for having under 10 samples.
_PETA_ALIASES = {"footwearSneakers": "footwearSneaker"}
_PETA_DISCARDED = {"accessoryFaceMask", "lowerBodyLogo", "accessoryShawl",
                   "lowerBodyThickStripes"}


def load_peta_labels(path: str) -> tuple[tuple[str, ...], dict[int, np.ndarray]]:
    """Parse a PETA ``Label.txt``: ``ID attr attr ...`` per identity.

    Returns 65 values per identity: the 61 binary attributes (0/1) and, for
    each of footwear/hair/lowerBody/upperBody, the index into ``PETA_COLOURS``
    of the first colour listed (-1 when none is). Discarded attributes are ignored.
    """
    if not os.path.isfile(path):
        raise DatasetLayoutError(f"{path}: missing PETA attribute file Label.txt")
    index = {n: i for i, n in enumerate(PETA_BINARY)}
    table: dict[int, np.ndarray] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            tokens = line.split()
            if not tokens:
                continue
            if not tokens[0].isdigit():
                raise DatasetLayoutError(
                    f"{path}:{lineno}: expected 'ID attr attr ...', got {line.strip()[:60]!r}")
            vec = np.zeros(len(PETA_NAMES), np.int8)
            vec[len(PETA_BINARY):] = -1
            for tok in tokens[1:]:
                tok = _PETA_ALIASES.get(tok, tok)
                if tok in index:
                    vec[index[tok]] = 1
                    continue
                if tok in _PETA_DISCARDED:
                    continue
                for j, part in enumerate(PETA_COLOUR_PARTS):
                    colour = tok[len(part):]
                    if tok.startswith(part) and colour in PETA_COLOURS:
                        slot = len(PETA_BINARY) + j
                        if vec[slot] < 0:
                            vec[slot] = PETA_COLOURS.index(colour)
                        break
                else:
                    raise DatasetLayoutError(f"{path}:{lineno}: unknown PETA attribute {tok!r}")
            table[int(tokens[0])] = vec
    return PETA_NAMES, table


MARKET_ATTRIBUTES = (
    "age backpack bag handbag downblack downblue downbrown downgray downgreen downpink "
    "downpurple downwhite downyellow upblack upblue upgreen upgray uppurple upred upwhite "
    "upyellow clothes down up hair hat gender").split()
DUKE_ATTRIBUTES = (
    "backpack bag handbag boots gender hat shoes top downblack downwhite downred downgray "
    "downblue downgreen downbrown upblack upwhite upred uppurple upgray upblue upgreen "
    "upbrown").split()


def load_market_style_attributes(path: str) -> tuple[tuple[str, ...], dict[int, np.ndarray]]:
    """Read ``market_attribute.mat`` (27 attributes) or ``duke_attribute.mat`` (23).

    The files hold a struct with ``train`` and ``test`` sub-structs, one field
    per attribute (values 1 = no / 2 = yes; Market's age 1..4) and
    ``image_index`` with the identity of each column. Values become 0-based.
    """
    import scipy.io

    try:
        mat = scipy.io.loadmat(path, squeeze_me=True, struct_as_record=False)
    except Exception as exc:  # scipy raises several types for bad files
        raise DatasetLayoutError(f"{path}: not a readable MATLAB attribute file ({exc})") from exc
    key = next((k for k in ("market_attribute", "duke_attribute") if k in mat), None)
    if key is None:
        raise DatasetLayoutError(
            f"{path}: expected variable 'market_attribute' or 'duke_attribute'")
    names = MARKET_ATTRIBUTES if key == "market_attribute" else DUKE_ATTRIBUTES
    table: dict[int, np.ndarray] = {}
    for split in ("train", "test"):
        sub = getattr(mat[key], split, None)
        if sub is None:
            raise DatasetLayoutError(f"{path}: {key} has no field {split!r}")
        missing = [n for n in names + ["image_index"] if not hasattr(sub, n)]
        if missing:
            raise DatasetLayoutError(f"{path}: {key}.{split} lacks fields {missing}")
        values = np.stack([np.atleast_1d(getattr(sub, n)).astype(np.int64) - 1
                           for n in names], axis=1)
        for pid, vec in zip(np.atleast_1d(sub.image_index), values):
            table[int(pid)] = vec.astype(np.int8)
    return tuple(names), table
