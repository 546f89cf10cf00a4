"""One sentence per pedestrian attribute (SPEC 2: PromptPAR's text inputs).

PromptPAR encodes each attribute as one sentence rather than as a "{class}" template, so
the sentence is stored as the attribute's `template` (it has no "{}" slot; both classes
of the binary attribute share it). The sentences below are written for this project in
one style: "A pedestrian wearing ...", "A pedestrian carrying ...", or a noun phrase
("A long-haired pedestrian", "A woman or girl"), short and about what is visible. They
are phrased so that `task.negated_sentence` gives a readable "no" prompt. They are not
the PromptPAR authors' wording, so text features differ from those the authors' weights
were trained with: to reproduce a released checkpoint exactly, supply the sentences it
was trained with through `data.templates` (attribute -> sentence) or a custom attribute
file (`data.attribute_file`); a PromptPAR pickle's own sentences are used as they are.
Keys are the attribute names as the annotation files spell them (misspellings
included); lookup ignores case.
"""

from __future__ import annotations

import re

PA100K = {
    "Female": "A woman or girl",
    "AgeOver60": "An elderly pedestrian, older than sixty",
    "Age18-60": "A pedestrian aged eighteen to sixty",
    "AgeLess18": "A pedestrian younger than eighteen",
    "Front": "A pedestrian facing the camera",
    "Side": "A pedestrian turned sideways to the camera",
    "Back": "A pedestrian facing away from the camera",
    "Hat": "A pedestrian wearing a hat or cap",
    "Glasses": "A pedestrian wearing eyeglasses or sunglasses",
    "HandBag": "A pedestrian carrying a handbag",
    "ShoulderBag": "A pedestrian carrying a bag over the shoulder",
    "Backpack": "A pedestrian wearing a backpack",
    "HoldObjectsInFront": "A pedestrian holding something in front of the body",
    "ShortSleeve": "A pedestrian wearing a short-sleeved top",
    "LongSleeve": "A pedestrian wearing a long-sleeved top",
    "UpperStride": "A pedestrian wearing a top with stripes",  # sic: PA100K's "stripe"
    "UpperLogo": "A pedestrian wearing a top with a logo or print",
    "UpperPlaid": "A pedestrian wearing a plaid or checked top",
    "UpperSplice": "A pedestrian wearing a color-block top",
    "LowerStripe": "A pedestrian wearing striped trousers or skirt",
    "LowerPattern": "A pedestrian wearing patterned trousers or skirt",
    "LongCoat": "A pedestrian wearing a coat reaching the knees",
    "Trousers": "A pedestrian wearing long trousers",
    "Shorts": "A pedestrian wearing shorts",
    "Skirt&Dress": "A pedestrian wearing a skirt or dress",
    "boots": "A pedestrian wearing ankle or knee boots",
}

PETA = {
    "accessoryHat": "A pedestrian wearing a hat or cap",
    "accessoryMuffler": "A pedestrian wearing a scarf around the neck",
    "accessoryNothing": "A bare-headed pedestrian with no accessories",
    "accessorySunglasses": "A pedestrian wearing dark sunglasses",
    "hairLong": "A long-haired pedestrian",
    "upperBodyCasual": "A pedestrian wearing a casual top",
    "upperBodyFormal": "A pedestrian wearing a formal shirt or jacket",
    "upperBodyJacket": "A pedestrian wearing a jacket",
    "upperBodyLogo": "A pedestrian wearing a top with a logo or print",
    "upperBodyPlaid": "A pedestrian wearing a plaid or checked top",
    "upperBodyShortSleeve": "A pedestrian wearing a short-sleeved top",
    "upperBodyThinStripes": "A pedestrian wearing a top with thin stripes",
    "upperBodyTshirt": "A pedestrian wearing a T-shirt",
    "upperBodyOther": "A pedestrian wearing some other kind of top",
    "upperBodyVNeck": "A pedestrian wearing a V-neck top",
    "lowerBodyCasual": "A pedestrian wearing casual trousers or skirt",
    "lowerBodyFormal": "A pedestrian wearing formal trousers or skirt",
    "lowerBodyJeans": "A pedestrian wearing jeans",
    "lowerBodyShorts": "A pedestrian wearing shorts",
    "lowerBodyShortSkirt": "A pedestrian wearing a short skirt",
    "lowerBodyTrousers": "A pedestrian wearing long trousers",
    "footwearLeatherShoes": "A pedestrian wearing leather shoes",
    "footwearSandals": "A pedestrian wearing sandals",
    "footwearShoes": "A pedestrian wearing ordinary closed shoes",
    "footwearSneaker": "A pedestrian wearing sneakers",
    "carryingBackpack": "A pedestrian wearing a backpack",
    "carryingOther": "A pedestrian carrying some other item",
    "carryingMessengerBag": "A pedestrian carrying a messenger bag",
    "carryingNothing": "An empty-handed pedestrian carrying no bag",
    "carryingPlasticBags": "A pedestrian carrying plastic bags",
    "personalLess30": "A pedestrian younger than thirty",
    "personalLess45": "A pedestrian aged thirty to forty-five",
    "personalLess60": "A pedestrian aged forty-five to sixty",
    "personalLarger60": "An elderly pedestrian, older than sixty",
    "personalMale": "A man or boy",
}

RAP1 = {
    "Female": "A woman or girl",
    "AgeLess16": "A pedestrian younger than sixteen",
    "Age17-30": "A pedestrian aged seventeen to thirty",
    "Age31-45": "A pedestrian aged thirty-one to forty-five",
    "BodyFat": "A heavily built pedestrian",
    "BodyNormal": "A pedestrian of average build",
    "BodyThin": "A thin, slender pedestrian",
    "Customer": "A person shopping as a customer",
    "Clerk": "A person working as a shop clerk",
    "hs-BaldHead": "A bald pedestrian",
    "hs-LongHair": "A long-haired pedestrian",
    "hs-BlackHair": "A black-haired pedestrian",
    "hs-Hat": "A pedestrian wearing a hat or cap",
    "hs-Glasses": "A pedestrian wearing eyeglasses or sunglasses",
    "hs-Muffler": "A pedestrian wearing a scarf around the neck",
    "ub-Shirt": "A pedestrian wearing a shirt",
    "ub-Sweater": "A pedestrian wearing a sweater",
    "ub-Vest": "A pedestrian wearing a vest",
    "ub-TShirt": "A pedestrian wearing a T-shirt",
    "ub-Cotton": "A pedestrian wearing a padded cotton coat",
    "ub-Jacket": "A pedestrian wearing a jacket",
    "ub-SuitUp": "A pedestrian wearing a suit jacket",
    "ub-Tight": "A pedestrian wearing a tight-fitting top",
    "ub-ShortSleeve": "A pedestrian wearing a short-sleeved top",
    "lb-LongTrousers": "A pedestrian wearing long trousers",
    "lb-Skirt": "A pedestrian wearing a skirt",
    "lb-ShortSkirt": "A pedestrian wearing a short skirt",
    "lb-Dress": "A pedestrian wearing a dress",
    "lb-Jeans": "A pedestrian wearing jeans",
    "lb-TightTrousers": "A pedestrian wearing tight trousers or leggings",
    "shoes-Leather": "A pedestrian wearing leather shoes",
    "shoes-Sport": "A pedestrian wearing sports shoes",
    "shoes-Boots": "A pedestrian wearing ankle or knee boots",
    "shoes-Cloth": "A pedestrian wearing cloth shoes",
    "shoes-Casual": "A pedestrian wearing casual shoes",
    "attach-Backpack": "A pedestrian wearing a backpack",
    "attach-SingleShoulderBag": "A pedestrian carrying a bag over the shoulder",
    "attach-HandBag": "A pedestrian carrying a handbag",
    "attach-Box": "A pedestrian carrying a box",
    "attach-PlasticBag": "A pedestrian carrying a plastic bag",
    "attach-PaperBag": "A pedestrian carrying a paper bag",
    "attach-HandTrunk": "A pedestrian carrying a suitcase or luggage case",
    "attach-Other": "A pedestrian carrying some other item",
    "action-Calling": "A pedestrian talking on a phone",
    "action-Talking": "A pedestrian chatting with another person",
    "action-Gathering": "A pedestrian standing in a group of people",
    "action-Holding": "A pedestrian holding an object",
    "action-Pusing": "A pedestrian pushing a cart or stroller",  # sic: RAPv1's own spelling
    "action-Pulling": "A pedestrian pulling a cart or case",
    "action-CarrybyArm": "A pedestrian carrying an item on the arm",
    "action-CarrybyHand": "A pedestrian carrying an item by hand",
}

RAP2 = {
    "hs-BaldHead": "A bald pedestrian",
    "hs-LongHair": "A long-haired pedestrian",
    "hs-BlackHair": "A black-haired pedestrian",
    "hs-Hat": "A pedestrian wearing a hat or cap",
    "hs-Glasses": "A pedestrian wearing eyeglasses or sunglasses",
    "ub-Shirt": "A pedestrian wearing a shirt",
    "ub-Sweater": "A pedestrian wearing a sweater",
    "ub-Vest": "A pedestrian wearing a vest",
    "ub-TShirt": "A pedestrian wearing a T-shirt",
    "ub-Cotton": "A pedestrian wearing a padded cotton coat",
    "ub-Jacket": "A pedestrian wearing a jacket",
    "ub-SuitUp": "A pedestrian wearing a suit jacket",
    "ub-Tight": "A pedestrian wearing a tight-fitting top",
    "ub-ShortSleeve": "A pedestrian wearing a short-sleeved top",
    "ub-Others": "A pedestrian wearing some other kind of top",
    "lb-LongTrousers": "A pedestrian wearing long trousers",
    "lb-Skirt": "A pedestrian wearing a skirt",
    "lb-ShortSkirt": "A pedestrian wearing a short skirt",
    "lb-Dress": "A pedestrian wearing a dress",
    "lb-Jeans": "A pedestrian wearing jeans",
    "lb-TightTrousers": "A pedestrian wearing tight trousers or leggings",
    "shoes-Leather": "A pedestrian wearing leather shoes",
    "shoes-Sports": "A pedestrian wearing sports shoes",
    "shoes-Boots": "A pedestrian wearing ankle or knee boots",
    "shoes-Cloth": "A pedestrian wearing cloth shoes",
    "shoes-Casual": "A pedestrian wearing casual shoes",
    "shoes-Other": "A pedestrian wearing some other footwear",
    "attachment-Backpack": "A pedestrian wearing a backpack",
    "attachment-ShoulderBag": "A pedestrian carrying a bag over the shoulder",
    "attachment-HandBag": "A pedestrian carrying a handbag",
    "attachment-Box": "A pedestrian carrying a box",
    "attachment-PlasticBag": "A pedestrian carrying a plastic bag",
    "attachment-PaperBag": "A pedestrian carrying a paper bag",
    "attachment-HandTrunk": "A pedestrian carrying a suitcase or luggage case",
    "attachment-Other": "A pedestrian carrying some other item",
    "AgeLess16": "A pedestrian younger than sixteen",
    "Age17-30": "A pedestrian aged seventeen to thirty",
    "Age31-45": "A pedestrian aged thirty-one to forty-five",
    "Age46-60": "A pedestrian aged forty-six to sixty",
    "Female": "A woman or girl",
    "BodyFat": "A heavily built pedestrian",
    "BodyNormal": "A pedestrian of average build",
    "BodyThin": "A thin, slender pedestrian",
    "Customer": "A person shopping as a customer",
    "Employee": "A person working as a store employee",
    "action-Calling": "A pedestrian talking on a phone",
    "action-Talking": "A pedestrian chatting with another person",
    "action-Gathering": "A pedestrian standing in a group of people",
    "action-Holding": "A pedestrian holding an object",
    "action-Pushing": "A pedestrian pushing a cart or stroller",
    "action-Pulling": "A pedestrian pulling a cart or case",
    "action-CarryingByArm": "A pedestrian carrying an item on the arm",
    "action-CarryingByHand": "A pedestrian carrying an item by hand",
    "action-Other": "A pedestrian doing some other action",
}

WIDER = {
    "Male": "A man or boy",
    "longHair": "A long-haired person",
    "sunglass": "A person wearing dark sunglasses",
    "Hat": "A person wearing a hat or cap",
    "Tshirt": "A person wearing a T-shirt",
    "longSleeve": "A person wearing a long-sleeved top",
    "formal": "A person dressed in formal clothes",
    "shorts": "A person wearing shorts",
    "jeans": "A person wearing jeans",
    "longPants": "A person wearing long pants",
    "skirt": "A person wearing a skirt",
    "faceMask": "A person wearing a mask over mouth and nose",
    "logo": "A person wearing clothes with a logo or print",
    "stripe": "A person wearing clothes with stripes",
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
