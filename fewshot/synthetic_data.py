"""Synthetic rows for fast unit tests only (`data.source: synthetic`): random keyword soup under
the original study's 9 CPC section names, with its class imbalance and label noise. Random words carry no
meaning a pre-trained model can use, so no study result is ever drawn from them; the embedded
default is real text (fewshot/corpus/debian_sections.py)."""
from __future__ import annotations

import random

# (name, train share) in the original study's label order.
SECTIONS = [
    ("Human Necessities", 0.14),
    ("Performing Operations; Transporting", 0.13),
    ("Chemistry; Metallurgy", 0.08),
    ("Textiles; Paper", 0.01),
    ("Fixed Constructions", 0.03),
    ("Mechanical Engineering; Lightning; Heating; Weapons; Blasting", 0.07),
    ("Physics", 0.22),
    ("Electricity", 0.21),
    ("General tagging of new or cross-sectional technology", 0.10),
]
LABELS = [name for name, _ in SECTIONS]

# Section-specific nouns / verbs, and the section whose words leak in most (a realistic confuser).
TERMS = {
    "Human Necessities": ("patient catheter implant dosage tablet food beverage garment shoe toothbrush "
                          "surgical wound therapy tissue infant cosmetic seed livestock diagnosis", "Chemistry; Metallurgy"),
    "Performing Operations; Transporting": ("vehicle conveyor gripper robot cutting press printing nozzle "
                                            "trailer wheel packaging spray mould drilling crane tyre", "Mechanical Engineering; Lightning; Heating; Weapons; Blasting"),
    "Chemistry; Metallurgy": ("polymer catalyst compound alloy solvent reaction oxide steel coating "
                              "peptide enzyme ester resin precipitate electrolyte crystal", "Human Necessities"),
    "Textiles; Paper": ("fibre yarn fabric paper pulp weaving knitting sheet nonwoven thread "
                        "cellulose loom spinning felt dyeing", "Chemistry; Metallurgy"),
    "Fixed Constructions": ("building wall roof concrete beam door window floor tunnel drilling "
                            "foundation brick bridge lock pavement", "Performing Operations; Transporting"),
    "Mechanical Engineering; Lightning; Heating; Weapons; Blasting": ("engine turbine piston valve bearing gear "
                                                                      "combustion heat exchanger pump lamp burner firearm shaft boiler", "Performing Operations; Transporting"),
    "Physics": ("optical lens sensor measurement image display wavelength laser computing memory "
                "signal processor detector interferometer clock", "Electricity"),
    "Electricity": ("circuit transistor battery antenna voltage semiconductor capacitor wireless "
                    "electrode inductor switch transmitter charging diode connector", "Physics"),
    "General tagging of new or cross-sectional technology": ("nanostructure emission climate recycling "
                                                             "photovoltaic hydrogen carbon capture nanoparticle efficiency renewable smart grid", "Electricity"),
}

GENERIC = ("system method apparatus device unit member portion assembly element layer surface structure "
           "module body first second plurality configured arranged coupled provided disposed "
           "according embodiment invention control process material means").split()
ADJ = "improved compact flexible integrated modular reduced efficient lightweight durable adjustable".split()
VERBS = "comprises includes provides receives controls supports connects reduces forms detects".split()

NOISE = 0.08          # share of rows whose label is replaced by a random other section
OWN, LEAK = 0.30, 0.14  # share of content words drawn from the own / the confuser section


def _word(rng: random.Random, label: str) -> str:
    r = rng.random()
    if r < OWN:
        return rng.choice(TERMS[label][0].split())
    if r < OWN + LEAK:
        return rng.choice(TERMS[TERMS[label][1]][0].split())
    if r < OWN + LEAK + 0.06:  # a little of any section: shared vocabulary
        return rng.choice(TERMS[rng.choice(LABELS)][0].split())
    return rng.choice(GENERIC)


def _sentence(rng: random.Random, label: str) -> str:
    n = rng.randint(3, 6)
    nouns = [_word(rng, label) for _ in range(n)]
    head = f"a {rng.choice(ADJ)} {nouns[0]} {rng.choice(VERBS)} a {nouns[1]}"
    rest = " ".join(f"{rng.choice(['and', 'with', 'for', 'of', 'to'])} the {w}" for w in nouns[2:])
    return f"{head} {rest} ."


def _abstract(rng: random.Random, label: str) -> str:
    target = rng.randint(40, 120)
    words: list[str] = []
    while len(words) < target:
        words += _sentence(rng, label).split()
    return " ".join(words[:target]).rstrip(" .") + " ."


def generate(n_rows: int, seed: int = 0) -> list[dict]:
    """n_rows rows of {'text', 'label'} with the seed set's imbalance; same seed, same rows."""
    rng = random.Random(f"builtin-patents-{seed}")  # the old name: same rows as before
    counts = [max(1, round(share * n_rows)) for _, share in SECTIONS]
    counts[LABELS.index("Physics")] += n_rows - sum(counts)
    rows = []
    for (label, _), c in zip(SECTIONS, counts):
        for _ in range(c):
            text = _abstract(rng, label)
            shown = label
            if rng.random() < NOISE:
                shown = rng.choice([x for x in LABELS if x != label])
            rows.append({"text": text, "label": shown})
    rng.shuffle(rows)
    return rows
