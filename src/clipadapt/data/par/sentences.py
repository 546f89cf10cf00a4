"""One hand-written sentence per pedestrian attribute (SPEC 2: PromptPAR's text inputs).

PromptPAR encodes each attribute as one sentence ("A pedestrian wearing a hat") rather
than as a "{class}" template, so the sentence is stored as the attribute's `template`
(it has no "{}" slot; both classes of the binary attribute share it). The PA100K, PETA,
RAPv1 and RAPv2 sentences are the PromptPAR authors' wording (their preprocessing
scripts), so text features match those their weights were trained with; the WIDER ones
are ours (the authors' list describes "stripe" as plaid and has fragments).
Keys are the attribute names as the annotation files spell them; lookup ignores case.
"""

from __future__ import annotations

import re

PA100K = {
    "Female": "A female pedestrian",
    "AgeOver60": "A pedestrian over the age of 60",
    "Age18-60": "A pedestrian between the ages of 18 and 60",
    "AgeLess18": "A pedestrian under the age of 18",
    "Front": "A pedestrian seen from the front",
    "Side": "A pedestrian seen from the side",
    "Back": "A pedestrian seen from the back",
    "Hat": "A pedestrian wearing a hat",
    "Glasses": "A pedestrian wearing glasses",
    "HandBag": "A pedestrian with a handbag",
    "ShoulderBag": "A pedestrian with a shoulder bag",
    "Backpack": "A pedestrian with a backpack",
    "HoldObjectsInFront": "A pedestrian holding objects in front",
    "ShortSleeve": "A pedestrian in short-sleeved upper wear",
    "LongSleeve": "A pedestrian in long-sleeved upper wear",
    "UpperStride": "A pedestrian in stride upper wear",
    "UpperLogo": "A pedestrian in upper wear with a logo",
    "UpperPlaid": "A pedestrian in plaid upper wear",
    "UpperSplice": "A pedestrian in splice upper wear",
    "LowerStripe": "A pedestrian in striped lower wear",
    "LowerPattern": "A pedestrian in patterned lower wear",
    "LongCoat": "A pedestrian in a long coat",
    "Trousers": "A pedestrian in trousers",
    "Shorts": "A pedestrian in shorts",
    "Skirt&Dress": "A pedestrian in skirts and dresses",
    "boots": "A pedestrian wearing boots",
}

PETA = {
    "accessoryHat": "A pedestrian wearing a hat",
    "accessoryMuffler": "A pedestrian wearing a muffler",
    "accessoryNothing": "A pedestrian with no headwear",
    "accessorySunglasses": "A pedestrian wearing sunglasses",
    "hairLong": "A pedestrian with long hair",
    "upperBodyCasual": "A pedestrian in casual upper wear",
    "upperBodyFormal": "A pedestrian in formal upper wear",
    "upperBodyJacket": "A pedestrian in a jacket",
    "upperBodyLogo": "A pedestrian in upper wear with a logo",
    "upperBodyPlaid": "A pedestrian in plaid upper wear",
    "upperBodyShortSleeve": "A pedestrian in a short-sleeved top",
    "upperBodyThinStripes": "A pedestrian in upper wear with thin stripes",
    "upperBodyTshirt": "A pedestrian in a t-shirt",
    "upperBodyOther": "A pedestrian in other upper wear",
    "upperBodyVNeck": "A pedestrian in upper wear with a V-neck",
    "lowerBodyCasual": "A pedestrian in casual lower wear",
    "lowerBodyFormal": "A pedestrian in formal lower wear",
    "lowerBodyJeans": "A pedestrian in jeans",
    "lowerBodyShorts": "A pedestrian in shorts",
    "lowerBodyShortSkirt": "A pedestrian in a short skirt",
    "lowerBodyTrousers": "A pedestrian in trousers",
    "footwearLeatherShoes": "A pedestrian in leather shoes",
    "footwearSandals": "A pedestrian in sandals",
    "footwearShoes": "A pedestrian in other types of shoes",
    "footwearSneaker": "A pedestrian in sneakers",
    "carryingBackpack": "A pedestrian with a backpack",
    "carryingOther": "A pedestrian with other types of attachments",
    "carryingMessengerBag": "A pedestrian with a messenger bag",
    "carryingNothing": "A pedestrian with no attachments",
    "carryingPlasticBags": "A pedestrian with plastic bags",
    "personalLess30": "A pedestrian under the age of 30",
    "personalLess45": "A pedestrian between the ages of 30 and 45",
    "personalLess60": "A pedestrian between the ages of 45 and 60",
    "personalLarger60": "A pedestrian over the age of 60",
    "personalMale": "A male pedestrian",
}

RAP1 = {
    "Female": "A female pedestrian",
    "AgeLess16": "A pedestrian under the age of 16",
    "Age17-30": "A pedestrian between the ages of 17 and 30",
    "Age31-45": "A pedestrian between the ages of 31 and 45",
    "BodyFat": "A pedestrian with a larger body build",
    "BodyNormal": "A pedestrian with a normal body build",
    "BodyThin": "A pedestrian with a slender body build",
    "Customer": "A customer",
    "Clerk": "A clerk",
    "hs-BaldHead": "A pedestrian with a bald head",
    "hs-LongHair": "A pedestrian with long hair",
    "hs-BlackHair": "A pedestrian with black hair",
    "hs-Hat": "A pedestrian wearing a hat",
    "hs-Glasses": "A pedestrian wearing glasses",
    "hs-Muffler": "A pedestrian wearing a muffler",
    "ub-Shirt": "A pedestrian in a shirt",
    "ub-Sweater": "A pedestrian in a sweater",
    "ub-Vest": "A pedestrian in a vest",
    "ub-TShirt": "A pedestrian in a t-shirt",
    "ub-Cotton": "A pedestrian in cotton clothing",
    "ub-Jacket": "A pedestrian in a jacket",
    "ub-SuitUp": "A pedestrian in a suit",
    "ub-Tight": "A pedestrian in tight-fitting clothes",
    "ub-ShortSleeve": "A pedestrian in a short-sleeved top",
    "lb-LongTrousers": "A pedestrian in long trousers",
    "lb-Skirt": "A pedestrian in a skirt",
    "lb-ShortSkirt": "A pedestrian in a short skirt",
    "lb-Dress": "A pedestrian in a dress",
    "lb-Jeans": "A pedestrian in jeans",
    "lb-TightTrousers": "A pedestrian in tight trousers",
    "shoes-Leather": "A pedestrian in leather shoes",
    "shoes-Sport": "A pedestrian in sports shoes",
    "shoes-Boots": "A pedestrian in boots",
    "shoes-Cloth": "A pedestrian in cloth shoes",
    "shoes-Casual": "A pedestrian in casual shoes",
    "attach-Backpack": "A pedestrian carrying a backpack",
    "attach-SingleShoulderBag": "A pedestrian with a shoulder bag",
    "attach-HandBag": "A pedestrian with a handbag",
    "attach-Box": "A pedestrian with a box",
    "attach-PlasticBag": "A pedestrian with a plastic bag",
    "attach-PaperBag": "A pedestrian with a paper bag",
    "attach-HandTrunk": "A pedestrian carrying a hand trunk",
    "attach-Other": "A pedestrian with other attachments",
    "action-Calling": "A pedestrian making a call",
    "action-Talking": "A pedestrian engaged in conversation",
    "action-Gathering": "A pedestrian gathered with others",
    "action-Holding": "A pedestrian holding something",
    "action-Pusing": "A pedestrian pushing something",  # sic: RAPv1's own spelling
    "action-Pulling": "A pedestrian pulling something",
    "action-CarrybyArm": "A pedestrian carrying something in their arm",
    "action-CarrybyHand": "A pedestrian carrying something in their hand",
}

RAP2 = {
    "hs-BaldHead": "A pedestrian with a bald head",
    "hs-LongHair": "A pedestrian with long hair",
    "hs-BlackHair": "A pedestrian with black hair",
    "hs-Hat": "A pedestrian wearing a hat",
    "hs-Glasses": "A pedestrian wearing glasses",
    "ub-Shirt": "A pedestrian in a shirt",
    "ub-Sweater": "A pedestrian in a sweater",
    "ub-Vest": "A pedestrian in a vest",
    "ub-TShirt": "A pedestrian in a t-shirt",
    "ub-Cotton": "A pedestrian in cotton clothing",
    "ub-Jacket": "A pedestrian in a jacket",
    "ub-SuitUp": "A pedestrian dressed in a suit",
    "ub-Tight": "A pedestrian in tight-fitting clothes",
    "ub-ShortSleeve": "A pedestrian in a short-sleeved top",
    "ub-Others": "A pedestrian with other upper wear",
    "lb-LongTrousers": "A pedestrian in long trousers",
    "lb-Skirt": "A pedestrian in a skirt",
    "lb-ShortSkirt": "A pedestrian in a short skirt",
    "lb-Dress": "A pedestrian in a dress",
    "lb-Jeans": "A pedestrian in jeans",
    "lb-TightTrousers": "A pedestrian in tight trousers",
    "shoes-Leather": "A pedestrian in leather shoes",
    "shoes-Sports": "A pedestrian in sports shoes",
    "shoes-Boots": "A pedestrian wearing boots",
    "shoes-Cloth": "A pedestrian in cloth shoes",
    "shoes-Casual": "A pedestrian in casual shoes",
    "shoes-Other": "A pedestrian in other footwear",
    "attachment-Backpack": "A pedestrian carrying a backpack",
    "attachment-ShoulderBag": "A pedestrian with a shoulder bag",
    "attachment-HandBag": "A pedestrian with a handbag",
    "attachment-Box": "A pedestrian with a box",
    "attachment-PlasticBag": "A pedestrian with a plastic bag",
    "attachment-PaperBag": "A pedestrian with a paper bag",
    "attachment-HandTrunk": "A pedestrian carrying a hand trunk",
    "attachment-Other": "A pedestrian with other attachments",
    "AgeLess16": "A pedestrian under the age of 16",
    "Age17-30": "A pedestrian between the ages of 17 and 30",
    "Age31-45": "A pedestrian between the ages of 31 and 45",
    "Age46-60": "A pedestrian between the ages of 46 and 60",
    "Female": "A female pedestrian",
    "BodyFat": "A pedestrian with a larger body build",
    "BodyNormal": "A pedestrian with a normal body build",
    "BodyThin": "A pedestrian with a slender body build",
    "Customer": "A customer",
    "Employee": "An employee",
    "action-Calling": "A pedestrian making a call",
    "action-Talking": "A pedestrian engaged in conversation",
    "action-Gathering": "A pedestrian gathered with others",
    "action-Holding": "A pedestrian holding something",
    "action-Pushing": "A pedestrian pushing something",
    "action-Pulling": "A pedestrian pulling something",
    "action-CarryingByArm": "A pedestrian carrying something in their arm",
    "action-CarryingByHand": "A pedestrian carrying something in their hand",
    "action-Other": "A pedestrian engaged in other actions",
}

WIDER = {
    "Male": "A male pedestrian",
    "longHair": "A pedestrian with long hair",
    "sunglass": "A pedestrian wearing sunglasses",
    "Hat": "A pedestrian wearing a hat",
    "Tshirt": "A pedestrian in a t-shirt",
    "longSleeve": "A pedestrian in long-sleeved upper wear",
    "formal": "A pedestrian in formal clothes",
    "shorts": "A pedestrian in shorts",
    "jeans": "A pedestrian in jeans",
    "longPants": "A pedestrian in long pants",
    "skirt": "A pedestrian in a skirt",
    "faceMask": "A pedestrian wearing a face mask",
    "logo": "A pedestrian in clothes with a logo",
    "stripe": "A pedestrian in striped clothes",
}

TABLES = {"pa100k": PA100K, "peta": PETA, "rap": RAP1, "rap2": RAP2, "wider": WIDER}


def _lower(table: dict[str, str]) -> dict[str, str]:
    return {k.lower(): v for k, v in table.items()}


_BY_DATASET = {key: _lower(table) for key, table in TABLES.items()}
_ANY = {k: v for table in reversed(list(_BY_DATASET.values())) for k, v in table.items()}


def sentence_for(dataset: str | None, name: str) -> str:
    """The attribute's sentence: from `dataset`'s table, else any table, else made from
    the name ("upperBodyLogo" -> "A pedestrian with upper body logo")."""
    key = name.lower()
    if dataset in _BY_DATASET and key in _BY_DATASET[dataset]:
        return _BY_DATASET[dataset][key]
    if key in _ANY:
        return _ANY[key]
    return f"A pedestrian with {_words(name)}"


def _words(name: str) -> str:
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", " ", name)  # camelCase -> camel Case
    spaced = re.sub(r"[-_&]+", " ", spaced)
    # Sentences become prompt templates: braces would be read as format slots.
    return " ".join(spaced.replace("{", "(").replace("}", ")").lower().split())
