"""Does a prior correction chosen on validation lift PubMedQA above always-"yes"? (issue #23's candidate)

    .venv/bin/python scripts/prior_correction.py outputs/pubmedqa-cv --style reasoning

For the base model and every saved checkpoint, each fold's validation rows are scored as the trainer scores them
(`checkpoint_selection`: lm-eval's raw prompt, yes/no/maybe log-likelihoods); the scores are cached in
`<fold>/prior_scores/`. The committed "answer" folds keep that cache, so they need no checkpoints; other folds need
the runs of `make sweep GRID=sweeps/pubmedqa-cv.yaml` *with* their `checkpoints/` (the committed copies leave them
out). The correction adds a bias per class (yes fixed at 0) before the argmax. It is chosen leave-one-fold-out:
the biases that score best on the *other* folds' validation rows (same checkpoint step) are applied to the held-out
fold, so no fold's number comes from biases fitted on its own rows. Also printed: the yes-versus-no ranking AUC of
log p(yes) − log p(no), which says whether the model separates the classes at all. No test split is read.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import torch
from peft import PeftModel
from saved_checkpoints import saved_or_cached
from transformers import AutoModelForCausalLM, AutoTokenizer

from medsft.evaluate.multiple_choice import score_items
from medsft.evaluate.transformers_scorer import HFScorer
from medsft.models import ensure_embedded_checkpoint
from medsft.runs import read_json_lines
from medsft.train.checkpoint_selection import validation_items

BIASES = np.arange(-6.0, 6.01, 0.25)  # log-likelihood units; yes/no/maybe differ by a few nats at most


def fold_scores(fold: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"base" | "checkpoint-N": (log-likelihoods [items, 3], gold)} for one fold, scored once and cached."""
    out, cache = {}, fold / "prior_scores"
    checkpoints = saved_or_cached(fold, cache)  # committed "answer" folds: from the cache alone
    if not checkpoints:
        raise SystemExit(f"{fold}: no checkpoints/ (rerun the sweep; committed fold folders leave them out)")
    cache.mkdir(exist_ok=True)
    for name, adapter in [("base", None), *((c.name, c) for c in checkpoints)]:
        path = cache / f"{name}.json"
        if not path.exists():
            items = validation_items(read_json_lines(fold / "data/validation.jsonl"), "pubmedqa")
            base = ensure_embedded_checkpoint()
            tokenizer = AutoTokenizer.from_pretrained(base)
            model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
            if adapter is not None:
                model = PeftModel.from_pretrained(model, adapter).merge_and_unload()
            with torch.no_grad():
                records = score_items(HFScorer(model, tokenizer, name=name, progress=False), "pubmedqa", items)
            path.write_text(json.dumps([{"id": r["id"], "gold": r["gold"], "scores": r["scores"]} for r in records]))
        records = json.loads(path.read_text())
        out[name] = (np.array([r["scores"] for r in records]), np.array([r["gold"] for r in records]))
    return out


def accuracy(scores: np.ndarray, gold: np.ndarray, bias: np.ndarray) -> float:
    return float(np.mean(np.argmax(scores + bias, axis=1) == gold))


def best_bias(folds: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The (0, no, maybe) biases with the most correct answers over `folds`; the smallest correction on ties."""
    candidates = (np.array([0.0, no, maybe]) for no, maybe in itertools.product(BIASES, BIASES))
    return max(candidates, key=lambda b: (sum(accuracy(s, g, b) * len(g) for s, g in folds), -np.abs(b).sum()))


def yes_no_auc(scores: np.ndarray, gold: np.ndarray) -> float:
    """P(margin of a random "yes" item > margin of a random "no" item), ties half: the Mann-Whitney AUC."""
    margin = scores[:, 0] - scores[:, 1]
    yes, no = margin[gold == 0], margin[gold == 1]
    return float(
        ((yes[:, None] > no[None, :]).sum() + 0.5 * (yes[:, None] == no[None, :]).sum()) / (len(yes) * len(no))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweep", type=Path, help="the sweep folder (outputs/pubmedqa-cv)")
    parser.add_argument("--style", default="reasoning", help="the PubMedQA training style whose folds to read")
    args = parser.parse_args()
    folds = sorted(args.sweep.glob(f"*style{args.style}_validation_fold-*"))
    if not folds:
        raise SystemExit(f"{args.sweep}: no '{args.style}' fold folders")
    scores = [fold_scores(fold) for fold in folds]
    print(f"{len(folds)} '{args.style}' folds: {', '.join(f.name for f in folds)}")
    print("model | plain per fold (mean) | corrected, leave-one-fold-out (mean) | always-yes (mean) | yes-vs-no AUC")
    names = set.intersection(*(set(s) for s in scores))
    for name in sorted(names, key=lambda n: -1 if n == "base" else int(n.split("-")[1])):
        data = [s[name] for s in scores]
        plain = [accuracy(s, g, np.zeros(3)) for s, g in data]
        corrected = [accuracy(*data[i], best_bias(data[:i] + data[i + 1 :])) for i in range(len(data))]
        constant = [float(np.mean(g == 0)) for _, g in data]
        auc = [yes_no_auc(s, g) for s, g in data]
        cells = [
            " / ".join(f"{v:.3f}" for v in values) + f" ({np.mean(values):.3f})"
            for values in (plain, corrected, constant, auc)
        ]
        print(f"{name} | " + " | ".join(cells))


if __name__ == "__main__":
    main()
