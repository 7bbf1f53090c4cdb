"""Synthetic clinical cases (triage, drug interactions, lab interpretation): a seeded `random.Random` picks only
the inputs; the label is computed from `facts/*.json`, never sampled. The two test sets: docs/data.md."""

from __future__ import annotations

import functools
import hashlib
import json
import operator
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from medsft.data.records import Example, make_example

FACTS_DIR = Path(__file__).resolve().parent / "facts"
DOMAINS = ("triage", "drug_interaction", "lab_interpretation")
STEPS = 5
RISK_LEVELS = ("LOW", "MEDIUM", "HIGH")
# The label evaluation scores first in each domain.
PRIMARY_LABEL = {"triage": "risk", "drug_interaction": "severity", "lab_interpretation": "urgency"}
EVAL_RESERVED_ONE_IN = 10
SYNTHETIC_EVAL_SIZE = 200
# What training never sees; only `synthetic_ood_cases` uses these (tests check 5,000 training cases).
HELD_OUT: dict[str, tuple[Any, ...]] = {
    "clusters": ("positional_vertigo", "palpitations", "red_swollen_leg"),  # a LOW and two MEDIUM presentations
    "lab_tests": ("magnesium", "alp", "free_t4"),  # one from each of three panels
    "drug_pairs": (  # one per severity grade
        ("ergotamine", "clarithromycin"),
        ("digoxin", "verapamil"),
        ("sildenafil", "doxazosin"),
        ("amoxicillin", "allopurinol"),
        ("salbutamol", "beclometasone"),
    ),
}
# Prompt phrasings per domain: the first TRAIN_TEMPLATES are for training (and the in-distribution test set),
# the next OOD_TEMPLATES only for the out-of-distribution test set.
TRAIN_TEMPLATES = {"triage": 3, "drug_interaction": 3, "lab_interpretation": 2}
OOD_TEMPLATES = 2
RED_FLAG_SHARE = 0.4
SEXES = ("man", "woman")
ADULT_AGES = (18, 90)
VITAL_NAMES = {"hr": "heart rate", "sbp": "systolic BP", "rr": "respiratory rate", "spo2": "SpO2"}


@functools.cache
def facts(name: str) -> dict[str, Any]:
    return json.loads((FACTS_DIR / f"{name}.json").read_text(encoding="utf-8"))


@dataclass(frozen=True)
class SyntheticCase:
    domain: str
    inputs: dict[str, Any]
    prompt: str
    steps: tuple[str, ...]
    answer: str
    expected: dict[str, str]
    severity: str

    @property
    def key(self) -> str:
        return case_key(self.domain, self.inputs)

    @property
    def id(self) -> str:
        return f"synthetic:{self.domain}:{hashlib.sha256(self.key.encode()).hexdigest()[:12]}"

    @property
    def completion(self) -> str:
        return "<think>\n" + "\n".join(self.steps) + "\n</think>\n" + self.answer

    def to_example(self) -> Example:
        meta = {
            "domain": self.domain,
            "severity": self.severity,
            "steps": len(self.steps),
            "expected": dict(self.expected),
            "case": json.dumps(self.inputs, sort_keys=True),
        }
        messages = [{"role": "user", "content": self.prompt}, {"role": "assistant", "content": self.completion}]
        return make_example(self.id, "synthetic", messages, meta)


def case_key(domain: str, inputs: Mapping[str, Any]) -> str:
    """The content of a case without its wording: two cases with the same key are the same case."""
    return json.dumps({"domain": domain, **{k: v for k, v in inputs.items() if k != "template"}}, sort_keys=True)


def is_reserved_for_eval(key: str) -> bool:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % EVAL_RESERVED_ONE_IN == 0


def generate_cases(n: int, seed: int = 0, *, for_eval: bool = False, ood: bool = False) -> list[SyntheticCase]:
    """`n` distinct cases, domains in rotation (a shorter run is a prefix of a longer one). `for_eval`: the reserved
    test cases; `ood`: only held-out clusters, tests, pairs and phrasings, which no other call emits."""
    split = "ood" if ood else "eval" if for_eval else "train"
    rng = random.Random(f"medsft-synthetic:{split}:{seed}")
    cases: list[SyntheticCase] = []
    seen: set[str] = set()
    attempts = 0
    while len(cases) < n:
        attempts += 1
        if attempts > 200 * (n + 10):
            raise RuntimeError(f"could not draw {n} distinct synthetic cases; the fact tables are too small")
        domain = DOMAINS[len(cases) % len(DOMAINS)]
        sample, build = BUILDERS[domain]
        inputs = sample(rng, ood)
        key = case_key(domain, inputs)
        if key in seen or (not ood and is_reserved_for_eval(key) != for_eval):
            continue
        seen.add(key)
        cases.append(build(inputs))
    return cases


def synthetic_eval_cases(n: int = SYNTHETIC_EVAL_SIZE, seed: int = 0) -> list[SyntheticCase]:
    """The in-distribution test set: drawn only from reserved cases, so no training case can equal a test case."""
    return generate_cases(n, seed, for_eval=True)


def synthetic_ood_cases(n: int = SYNTHETIC_EVAL_SIZE, seed: int = 0) -> list[SyntheticCase]:
    """The out-of-distribution test set: held-out clusters, lab tests, drug pairs (facts given) and phrasings."""
    return generate_cases(n, seed, ood=True)


def generate_synthetic(n: int, seed: int = 0) -> list[Example]:
    return [case.to_example() for case in generate_cases(n, seed)]


def draw_template(rng: random.Random, domain: str, ood: bool) -> int:
    """A training phrasing, or (OOD) one of the phrasings after them that training never uses."""
    return TRAIN_TEMPLATES[domain] + rng.randrange(OOD_TEMPLATES) if ood else rng.randrange(TRAIN_TEMPLATES[domain])


def join_words(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def sample_triage(rng: random.Random, ood: bool = False) -> dict[str, Any]:
    table = facts("triage")
    cluster = rng.choice([c for c in table["clusters"] if (c["id"] in HELD_OUT["clusters"]) == ood])
    sex = rng.choice(cluster.get("sexes", SEXES))
    age = rng.randint(*cluster["ages"])
    symptoms = [cluster["core"]] + rng.sample(cluster["symptoms"], rng.randint(1, min(3, len(cluster["symptoms"]))))
    flag = None
    if rng.random() < RED_FLAG_SHARE:
        allowed = [f for f in cluster["red_flags"] if age >= f.get("min_age", 0)]
        flag = rng.choice(allowed) if allowed else None
    normal = table["normal_vitals"]
    vitals: dict[str, Any] = {name: rng.randint(*normal[name]) for name in ("hr", "sbp", "rr", "spo2")}
    vitals["dbp"] = rng.randint(60, min(92, vitals["sbp"] - 30))
    fever = cluster.get("fever") or (flag or {}).get("fever")
    vitals["temp"] = round(rng.uniform(*(table["fever_temp"] if fever else normal["temp"])), 1)
    if flag and "vital" in flag:
        vitals[flag["vital"]] = rng.randint(*flag["range"])
        if flag["vital"] == "sbp":
            vitals["dbp"] = rng.randint(42, vitals["sbp"] - 25)
    elif flag:
        symptoms.insert(rng.randint(1, len(symptoms)), flag["finding"])
    return {
        "cluster": cluster["id"],
        "age": age,
        "sex": sex,
        "symptoms": symptoms,
        "duration": rng.choice(cluster["durations"]),
        "vitals": vitals,
        "template": draw_template(rng, "triage", ood),
    }


def build_triage(inputs: dict[str, Any]) -> SyntheticCase:
    """Risk and differential from the tables (red flags and red vitals → HIGH; see facts/triage.json), then text."""
    table = facts("triage")
    cluster = next(c for c in table["clusters"] if c["id"] == inputs["cluster"])
    age, sex, duration, v = inputs["age"], inputs["sex"], inputs["duration"], inputs["vitals"]
    flags = [f for f in cluster["red_flags"] if "finding" in f and f["finding"] in inputs["symptoms"]]
    compare = {">=": operator.ge, "<=": operator.le}  # NEWS2-style single-parameter limits the vitals reach
    hits = [rule for rule in table["red_vitals"] if compare[rule["op"]](v[rule["vital"]], rule["limit"])]
    older = table["older_age"]
    if flags or hits:
        risk, why = "HIGH", "a red flag is present, so the risk is HIGH."
    elif cluster["base_risk"] == "HIGH":
        risk, why = "HIGH", "this presentation is high risk in itself, so the risk is HIGH."
    elif cluster["base_risk"] == "MEDIUM":
        risk, why = "MEDIUM", "the presentation carries medium risk and there are no red flags, so the risk is MEDIUM."
    elif age >= older:
        risk, why = "MEDIUM", f"a low-risk presentation, but age {age} ({older} or over) raises it to MEDIUM."
    else:
        risk, why = "LOW", f"a low-risk presentation, no red flags and age under {older}: LOW."
    vital_flags = [f for f in cluster["red_flags"] if f.get("vital") in {h["vital"] for h in hits}]
    leading = (flags or vital_flags)[0]["suggests"] if flags or vital_flags else cluster["differential"][0]
    differential = [leading] + [d for d in cluster["differential"] if d != leading][:2]
    symptoms = join_words(inputs["symptoms"])
    vitals = (
        f"HR {v['hr']}/min, BP {v['sbp']}/{v['dbp']} mmHg, RR {v['rr']}/min, SpO2 {v['spo2']}%, T {v['temp']:.1f} C"
    )
    prompt = [
        f"Triage this patient. A {age}-year-old {sex} reports {symptoms} for {duration}. Vital signs: {vitals}. "
        "Give a differential diagnosis and a risk level (LOW, MEDIUM or HIGH).",
        f"{age}-year-old {sex} with {duration} of {symptoms}. Observations: {vitals}. "
        "What is the likely differential, and how urgent is this: LOW, MEDIUM or HIGH risk?",
        f"Patient: {age}-year-old {sex}\nComplaint: {symptoms} ({duration})\nVitals: {vitals}\n"
        "Task: triage with a differential and a risk level (LOW/MEDIUM/HIGH).",
        # Held out: only in the out-of-distribution test set.
        f"Walk-in assessment. The person in front of you is a {age}-year-old {sex} who has had {symptoms} "
        f"for {duration}. Measured on arrival: {vitals}. List the likely diagnoses and grade the risk as "
        "LOW, MEDIUM or HIGH.",
        f"Nurse phone note: {sex}, aged {age}. Problem: {symptoms}, going on for {duration}. Last set of "
        f"observations: {vitals}. How risky is this (LOW / MEDIUM / HIGH), and what could it be?",
    ][inputs["template"]]
    brief = f"HR {v['hr']}, SBP {v['sbp']}, RR {v['rr']}, SpO2 {v['spo2']}%"
    side = {">=": "at or above", "<=": "at or below"}
    reached = "; ".join(f"{VITAL_NAMES[h['vital']]} {v[h['vital']]} is {side[h['op']]} {h['limit']}" for h in hits)
    step2 = f"2. Vital signs: {brief}; " + (f"{reached}, a red flag." if hits else "none at a red-flag limit.")
    found = "; ".join(f"{f['finding']} ({f['label']}) suggests {f['suggests']}" for f in flags)
    checked = ", ".join(f["label"] for f in cluster["red_flags"] if "finding" in f)
    step3 = "3. Red flags: " + (f"{found}." if flags else f"none reported (checked: {checked}).")
    lead = "must be excluded first" if flags or hits else "is most likely"
    step4 = f"4. Differential: {differential[0]} {lead}; also consider {differential[1]} and {differential[2]}."
    step1 = f"1. Summary: {age}-year-old {sex}, {cluster['core']} for {duration}."
    steps = (step1, step2, step3, step4, f"5. Risk: {why}")
    answer = (
        f"Differential: 1. {differential[0]}; 2. {differential[1]}; 3. {differential[2]}\n"
        f"Risk level: {risk}\nAdvice: {table['advice'][risk]}"
    )
    expected = {"risk": risk, "diagnosis": differential[0]}
    return SyntheticCase("triage", inputs, prompt, steps, answer, expected, risk)


def sample_drug(rng: random.Random, ood: bool = False) -> dict[str, Any]:
    table = facts("drug_interactions")
    held_out = [sorted(pair) for pair in HELD_OUT["drug_pairs"]]
    pairs = [p for p in table["pairs"] if (sorted(p["drugs"]) in held_out) == ood]
    # Severity first, then a pair of that severity, so rare grades (MINOR, NONE) are not drowned out.
    severity = rng.choice([s for s in table["severities"] if any(p["severity"] == s for p in pairs)])
    pair = rng.choice([p for p in pairs if p["severity"] == severity])
    current, new = pair["drugs"] if rng.random() < 0.5 else pair["drugs"][::-1]
    drugs = table["drugs"]
    sexes = [s for s in SEXES if all(s in drugs[d].get("sexes", SEXES) for d in (current, new))]
    low = max([ADULT_AGES[0]] + [drugs[d]["ages"][0] for d in (current, new) if "ages" in drugs[d]])
    high = min([ADULT_AGES[1]] + [drugs[d]["ages"][1] for d in (current, new) if "ages" in drugs[d]])
    return {
        "drugs": [current, new],
        "indications": [rng.choice(drugs[current]["indications"]), rng.choice(drugs[new]["indications"])],
        "age": rng.randint(low, high),
        "sex": rng.choice(sexes),
        "egfr": rng.randint(25, 110),
        "template": draw_template(rng, "drug_interaction", ood),
    }


def build_drug(inputs: dict[str, Any]) -> SyntheticCase:
    """The severity is the table's severity for the pair (see facts/drug_interactions.json)."""
    table = facts("drug_interactions")
    drugs = table["drugs"]
    (current, new), (for_current, for_new) = inputs["drugs"], inputs["indications"]
    age, sex, egfr = inputs["age"], inputs["sex"], inputs["egfr"]
    pair = next(p for p in table["pairs"] if sorted(p["drugs"]) == sorted([current, new]))
    severity = pair["severity"]
    label = {"severity": severity, "interaction": "none" if severity == "NONE" else " + ".join(sorted([current, new]))}
    prompt = [
        f"A {age}-year-old {sex} (eGFR {egfr} mL/min/1.73m2) takes {current} for {for_current}. "
        f"{capitalise(new)} is being considered for {for_new}. Check this combination for an interaction and rate "
        "its severity (NONE, MINOR, MODERATE, MAJOR or CONTRAINDICATED).",
        f"Medication check for a {age}-year-old {sex}, eGFR {egfr}: current medicine {current} ({for_current}); "
        f"proposed new medicine {new} ({for_new}). Is there an interaction, and how severe is it?",
        f"Patient: {sex}, {age} years, eGFR {egfr}\nTaking: {current} for {for_current}\n"
        f"New prescription: {new} for {for_new}\n"
        "Task: interaction check with a severity rating (NONE/MINOR/MODERATE/MAJOR/CONTRAINDICATED).",
        # Held out: only in the out-of-distribution test set, whose pairs training never sees, so the facts
        # the severity follows from are given.
        f"Pharmacy query. {capitalise(new)} has been prescribed for {for_new} to a {sex} aged {age} "
        f"(eGFR {egfr}) who already takes {current} for {for_current}. Reference note on this pair: "
        f"{pair['mechanism']}; reported effect: {pair['effect']}. How serious is the interaction: NONE, "
        "MINOR, MODERATE, MAJOR or CONTRAINDICATED?",
        f"Before co-prescribing {new} ({for_new}) with {current} ({for_current}) for a {age}-year-old {sex} "
        f"with eGFR {egfr}: the interaction reference gives the mechanism as {pair['mechanism']} and the "
        f"effect as {pair['effect']}. Grade the severity (NONE/MINOR/MODERATE/MAJOR/CONTRAINDICATED).",
    ][inputs["template"]]
    factors = []
    if age >= facts("triage")["older_age"]:
        factors.append(f"age {age} makes adverse effects more likely")
    if egfr < 60:
        factors.append(f"eGFR {egfr} means reduced kidney function, which can magnify adverse effects")
    if not factors:
        factors.append(f"age {age} and eGFR {egfr} add no extra risk")
    steps = (
        f"1. Drugs: {current} ({drugs[current]['class']}) for {for_current}; "
        f"{new} ({drugs[new]['class']}) proposed for {for_new}.",
        f"2. Mechanism: {pair['mechanism']}.",
        f"3. Effect: {pair['effect']}.",
        f"4. Patient factors: {'; '.join(factors)}.",
        f"5. Severity: {severity}, {table['severities'][severity]}. Management: {pair['management']}.",
    )
    none = severity == "NONE"
    interaction = f"none expected between {current} and {new}" if none else f"{current} + {new}: {pair['effect']}"
    answer = f"Interaction: {interaction}\nSeverity: {severity}\nManagement: {capitalise(pair['management'])}."
    return SyntheticCase("drug_interaction", inputs, prompt, steps, answer, label, severity)


def reference_range(test: Mapping[str, Any], sex: str) -> tuple[float, float]:
    return tuple(test["range"][sex] if isinstance(test["range"], dict) else test["range"])


def classify(test: Mapping[str, Any], sex: str, value: float) -> tuple[str, bool]:
    """(LOW | NORMAL | HIGH, critical?) with inclusive reference ranges and strict critical limits."""
    low, high = reference_range(test, sex)
    flag = "LOW" if value < low else "HIGH" if value > high else "NORMAL"
    critical_low, critical_high = test["critical"] or (None, None)
    critical = (critical_low is not None and value < critical_low) or (
        critical_high is not None and value > critical_high
    )
    return flag, critical


def draw_value(rng: random.Random, test: Mapping[str, Any], sex: str, status: str) -> float | int:
    """A value in the band for `status`, redrawn until the rules classify it as intended (rounding can cross)."""
    low, high = reference_range(test, sex)
    critical_low, critical_high = test["critical"] or (None, None)
    floor, ceiling = test["plausible"]
    span = high - low
    bands = {
        "normal": (low + 0.1 * span, high - 0.1 * span),
        "low": (critical_low if critical_low is not None else floor, low),
        "high": (high, critical_high if critical_high is not None else ceiling),
        "critical_low": (floor, critical_low),
        "critical_high": (critical_high, ceiling),
    }
    start, end = bands[status]
    intended = (status.removeprefix("critical_").upper(), status.startswith("critical_"))  # what `classify` says
    for _ in range(1000):
        value = round(rng.uniform(start, end), test["decimals"])
        if test["decimals"] == 0:
            value = int(value)
        if classify(test, sex, value) == intended:
            return value
    raise RuntimeError(f"cannot draw a {status} value for {test['name']}")


def critical_directions(test: Mapping[str, Any]) -> list[str]:
    limits = test["critical"] or (None, None)
    return [
        d for d, limit in zip(("low", "high"), limits, strict=True) if limit is not None and d in test["directions"]
    ]


def critical_note(key: str) -> str:
    """` [critical below 1.0 or above 4.7]` for a held-out test (training never teaches its limits), else ``."""
    limits = facts("lab_tests")["tests"][key]["critical"]
    if key not in HELD_OUT["lab_tests"] or not limits:
        return ""
    parts = [f"{side} {limit}" for side, limit in zip(("below", "above"), limits, strict=True) if limit is not None]
    return f" [critical {' or '.join(parts)}]"


def sample_lab(rng: random.Random, ood: bool = False) -> dict[str, Any]:
    tests = facts("lab_tests")["tests"]
    held = set(HELD_OUT["lab_tests"])  # training panels lack them; OOD panels are the (whole) panels holding one
    all_panels = {
        name: [k for k in keys if ood or k not in held]
        for name, keys in facts("lab_tests")["panels"].items()
        if not ood or held & set(keys)
    }
    urgency = rng.choice(RISK_LEVELS)
    panels = list(all_panels)
    if urgency == "HIGH":
        panels = [p for p in panels if any(critical_directions(tests[k]) for k in all_panels[p])]
    panel = rng.choice(panels)
    members = all_panels[panel]
    count = min(len(members), rng.randint(3, 4))
    # A HIGH case needs a test that has a critical limit, so pick that test first and fill up around it.
    critical = rng.choice([k for k in members if critical_directions(tests[k])]) if urgency == "HIGH" else None
    rest = [k for k in members if k != critical]
    chosen = set(rng.sample(rest, count - (critical is not None))) | ({critical} if critical else set())
    keys = [k for k in members if k in chosen]
    sex, age = rng.choice(SEXES), rng.randint(*ADULT_AGES)
    status = dict.fromkeys(keys, "normal")
    extra = 1 if count >= 4 and rng.random() < 0.3 else 0
    if critical:
        status[critical] = "critical_" + rng.choice(critical_directions(tests[critical]))
    abnormal = {"LOW": 0, "MEDIUM": 1 + extra, "HIGH": extra}[urgency]
    for key in rng.sample([k for k in keys if status[k] == "normal"], abnormal):
        status[key] = rng.choice(tests[key]["directions"])
    inputs = {
        "panel": panel,
        "age": age,
        "sex": sex,
        "values": {key: draw_value(rng, tests[key], sex, status[key]) for key in keys},
        "show_ranges": rng.random() < 0.5 or ood,  # a held-out test's range must be given to be read
        "template": draw_template(rng, "lab_interpretation", ood),
    }
    if ood and not set(inputs["values"]) & set(HELD_OUT["lab_tests"]):
        return sample_lab(rng, ood)  # redraw until a held-out test is among the results
    return inputs


def build_lab(inputs: dict[str, Any]) -> SyntheticCase:
    """Flags, critical results and urgency from the reference table (see facts/lab_tests.json), then text."""
    table = facts("lab_tests")
    tests = table["tests"]
    panel, age, sex = inputs["panel"], inputs["age"], inputs["sex"]
    rows = []
    for key, value in inputs["values"].items():
        test = tests[key]
        low, high = reference_range(test, sex)
        flag, is_critical = classify(test, sex, value)
        unit = f" {test['unit']}" if test["unit"] else ""
        decimals = test["decimals"]
        rows.append((test, f"{value:.{decimals}f}", unit, f"{low:.{decimals}f}-{high:.{decimals}f}", flag, is_critical))
    shown = [f"{t['name']} {v}{u}" + (f" (ref {s})" if inputs["show_ranges"] else "") for t, v, u, s, _, _ in rows]
    shown_ood = [line + critical_note(key) for line, key in zip(shown, inputs["values"], strict=True)]
    prompt = [
        f"Interpret these {panel} results for a {age}-year-old {sex}: {', '.join(shown)}. "
        "Flag each result and say how urgent follow-up is (LOW, MEDIUM or HIGH).",
        f"{capitalise(panel)}, {sex} aged {age}:\n"
        + "\n".join(shown)
        + "\nWhich results are abnormal, are any critical, and how urgent is follow-up (LOW/MEDIUM/HIGH)?",
        # Held out: only in the out-of-distribution test set (held-out tests also state their critical limits).
        f"Results are back from the {panel} of a {sex} patient, {age} years old. "
        + "; ".join(shown_ood)
        + ". Which values are out of range, is anything critical, and how soon should someone act "
        "(LOW, MEDIUM or HIGH urgency)?",
        f"Lab report to review ({panel}; patient {age}, {sex})\n"
        + "\n".join(f"- {line}" for line in shown_ood)
        + "\nMark each result, name any critical value, and give the follow-up urgency: LOW/MEDIUM/HIGH.",
    ][inputs["template"]]
    sex_specific = [t["name"] for t, *_ in rows if isinstance(t["range"], dict)]
    note = f", {sex}-specific for {join_words(sex_specific)}" if sex_specific else ""
    compared = "; ".join(f"{t['name']} {v} ({s}) {f if f != 'NORMAL' else 'normal'}" for t, v, _, s, f, _ in rows)
    criticals = []
    for test, value, unit, _, flag, is_critical in rows:
        if is_critical:
            side, limit = ("below", test["critical"][0]) if flag == "LOW" else ("above", test["critical"][1])
            criticals.append(f"{test['name']} {value}{unit} is {side} the critical limit of {limit}")
    meanings = [f"{t['name']} {f}: {t[f.lower()]}" for t, _, _, _, f, _ in rows if f != "NORMAL"]
    flags = [f"{t['name']} {f}" for t, _, _, _, f, _ in rows if f != "NORMAL"]
    critical = "; ".join(sorted(t["name"] for t, *_, is_critical in rows if is_critical)) or "none"
    urgency = "HIGH" if criticals else "MEDIUM" if flags else "LOW"
    step5 = {
        "HIGH": "5. Urgency: a critical value needs same-day action, so urgency is HIGH.",
        "MEDIUM": "5. Urgency: abnormal results but none critical, so urgency is MEDIUM.",
        "LOW": "5. Urgency: every result is in range, so urgency is LOW.",
    }[urgency]
    steps = (
        f"1. Context: {panel} for a {age}-year-old {sex}, read against adult reference ranges{note}.",
        f"2. Comparison: {compared}.",
        f"3. Critical limits: {'; '.join(criticals) or 'no value crosses a critical limit'}.",
        f"4. Interpretation: {'. '.join(meanings) or 'all results are within their reference ranges'}.",
        step5,
    )
    advice = table["advice"][urgency]
    answer = f"Flags: {'; '.join(flags) or 'none'}\nCritical: {critical}\nUrgency: {urgency}\nAdvice: {advice}"
    label = {"flags": "; ".join(sorted(flags)) or "none", "critical": critical, "urgency": urgency}
    return SyntheticCase("lab_interpretation", inputs, prompt, steps, answer, label, urgency)


BUILDERS = {
    "triage": (sample_triage, build_triage),
    "drug_interaction": (sample_drug, build_drug),
    "lab_interpretation": (sample_lab, build_lab),
}


def expected_label(case: SyntheticCase | Mapping[str, Any]) -> dict[str, str]:
    """The label a case should be scored against: from a `SyntheticCase`, a training example or its meta."""
    if isinstance(case, SyntheticCase):
        return dict(case.expected)
    meta = case.get("meta", case)
    return {k: v for k, v in (meta.get("expected") or {}).items() if v is not None}


def answer_line(text: str, label: str) -> str | None:
    match = re.search(rf"^[\s*#-]*{label}\s*\**\s*:\s*\**\s*(.+?)\s*$", text, re.MULTILINE | re.IGNORECASE)
    return match.group(1).strip() if match else None


def first_word(value: str | None, allowed: tuple[str, ...]) -> str | None:
    match = re.match(r"[A-Za-z]+", value or "")
    return match.group(0).upper() if match and match.group(0).upper() in allowed else None


def canonical_flags(value: str) -> str:
    """`Sodium LOW; Glucose HIGH` in any order or separator → sorted `Glucose HIGH; Sodium LOW` (or `none`)."""
    found = (re.match(r"\s*(.+?)\s+(LOW|HIGH)\b", part.strip(), re.IGNORECASE) for part in re.split(r"[;,]", value))
    return "; ".join(sorted(f"{m.group(1).strip()} {m.group(2).upper()}" for m in found if m)) or "none"


def parse_synthetic_answer(domain: str, text: str) -> dict[str, str]:
    """The final-answer lines of a reply as the keys of `expected_label`; a key stated with no allowed value is left
    out, so it scores as wrong rather than raising."""
    answer = text.rsplit("</think>", 1)[-1]  # after the reasoning, or the whole text if there is none
    parsed: dict[str, str | None] = {}
    if domain == "triage":
        parsed["risk"] = first_word(answer_line(answer, "Risk level"), RISK_LEVELS)
        differential = answer_line(answer, "Differential")
        if differential:
            parsed["diagnosis"] = re.sub(r"^\s*1[.)]\s*", "", re.split(r";|\s2[.)]\s", differential)[0]).strip()
    elif domain == "drug_interaction":
        severities = tuple(facts("drug_interactions")["severities"])
        parsed["severity"] = first_word(answer_line(answer, "Severity"), severities)
        interaction = answer_line(answer, "Interaction")
        if interaction:
            if interaction.lower().startswith(("none", "no ")):
                parsed["interaction"] = "none"
            else:
                drugs = [d.strip().lower() for d in interaction.split(":")[0].split("+")]
                parsed["interaction"] = " + ".join(sorted(drugs)) if len(drugs) == 2 else None
    elif domain == "lab_interpretation":
        parsed["urgency"] = first_word(answer_line(answer, "Urgency"), RISK_LEVELS)
        flags = answer_line(answer, "Flags")
        if flags is not None:
            parsed["flags"] = canonical_flags(flags)
        critical = answer_line(answer, "Critical")
        if critical is not None:
            names = [c.strip() for c in re.split(r"[;,]", critical) if c.strip()]
            parsed["critical"] = "none" if not names or names[0].lower() == "none" else "; ".join(sorted(names))
    else:
        raise ValueError(f"unknown synthetic domain '{domain}'; choose from {', '.join(DOMAINS)}")
    return {k: v for k, v in parsed.items() if v is not None}
