"""Free-text answers: SQuAD-style normalised exact match and token F1.

Normalisation is SQuAD v1.1's (lower case, punctuation and the articles a/an/the dropped, whitespace
collapsed), so scores are comparable with the usual reading-comprehension numbers. An answer is correct when its
token F1 against the gold reaches the threshold; exact match always implies F1 = 1.
"""

from __future__ import annotations

import re
import string
from collections import Counter

from reflectevo.schema import Problem, Verdict

DEFAULT_F1_THRESHOLD = 0.8

_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    text = text.lower().translate(_PUNCTUATION)
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1(prediction: str, gold: str) -> float:
    """Token-overlap F1 of two normalised strings (0.0 when either is empty, unless both are)."""
    pred_tokens, gold_tokens = prediction.split(), gold.split()
    if not pred_tokens or not gold_tokens:
        return float(pred_tokens == gold_tokens)
    common = sum((Counter(pred_tokens) & Counter(gold_tokens)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred_tokens), common / len(gold_tokens)
    return 2 * precision * recall / (precision + recall)


def verify(problem: Problem, output: str, threshold: float = DEFAULT_F1_THRESHOLD) -> Verdict:
    """`verify(p, "The Eiffel Tower!")` is correct for the gold "eiffel tower" (EM 1, F1 1.0)."""
    prediction, gold = normalize(output), normalize(problem.answer)
    if not prediction:
        return Verdict(status="unparseable", reason="empty answer after normalisation")
    em, score = prediction == gold, f1(prediction, gold)
    return Verdict(
        status="correct" if score >= threshold else "wrong",
        parsed_answer=prediction,
        reason=f"EM={int(em)} F1={score:.3f} (threshold {threshold:g})",
    )
