"""Math answers: symbolic equivalence with math-verify, Hendrycks MATH string normalisation as the fallback.

math-verify's own timeouts are `signal.alarm`, which raises in any thread but the main one, and Prefect runs
tasks in worker threads; so they are switched off here (`parsing_timeout=None`, `timeout_seconds=None`) and
`verifiers.verify_many` bounds each call with a killable worker process instead. Call this module directly only
on trusted input or from code that bounds it the same way.
"""

from __future__ import annotations

import logging
import re
from functools import cache

from reflectevo.schema import Problem, Verdict

# Gold answers and short final answers are usually bare LaTeX ("\dfrac{1}{2}", "[1,3)"); math-verify extracts
# LaTeX only between delimiters, so such text is wrapped in $...$ before parsing.
_DELIMITED = re.compile(r"\$|\\\(|\\\[|\\boxed")


@cache
def _math_verify():
    # Imported on first use: sympy and the ANTLR parser take about a second, which `import verifiers` must not.
    import math_verify

    # It warns on every call that its timeout is disabled; we know, the worker process is the timeout.
    logging.getLogger("math_verify").setLevel(logging.ERROR)
    config = [math_verify.LatexExtractionConfig(), math_verify.ExprExtractionConfig()]
    return math_verify, config


def last_boxed(text: str) -> str | None:
    r"""Content of the last `\boxed{...}` (or `\fbox{...}`) in `text`, nested braces included; None if absent."""
    start = max(text.rfind("\\boxed"), text.rfind("\\fbox"))
    if start < 0:
        return None
    i = text.find("{", start)
    if i < 0 or text[start:i].strip() not in ("\\boxed", "\\fbox"):
        return None
    depth = 0
    for j in range(i, len(text)):
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        if depth == 0:
            return text[i + 1 : j]
    return None


def parse(text: str) -> list:
    """math-verify's parse of an answer: [sympy object, matched string], or [] when nothing was found."""
    mv, config = _math_verify()
    text = text.strip()
    if not text:
        return []
    if not _DELIMITED.search(text):
        parsed = mv.parse(f"${text}$", extraction_config=config, parsing_timeout=None)
        if parsed:
            return parsed
    return mv.parse(text, extraction_config=config, parsing_timeout=None)


def _fix_fracs(s: str) -> str:
    r"""`\frac12` -> `\frac{1}{2}`, `\frac1{2}` -> `\frac{1}{2}`: the brace-less forms MATH solutions use."""
    return re.sub(r"\\frac\s*(\{[^{}]*\}|\w)\s*(\{[^{}]*\}|\w)", lambda m: "\\frac" + "".join(
        g if g.startswith("{") else "{" + g + "}" for g in m.groups()), s)


def _canonical_number(s: str) -> str:
    """`42.0` -> `42`, `1,000` -> `1000`, `.50` -> `0.5`; anything that is not one plain number is returned as is."""
    if not re.fullmatch(r"-?(?:\d{1,3}(?:,\d{3})+|\d*)(?:\.\d+)?", s) or not re.search(r"\d", s):
        return s
    x = float(s.replace(",", ""))
    return str(int(x)) if x.is_integer() else repr(x)


def strip_string(s: str) -> str:
    r"""Hendrycks MATH `_strip_string`-style normal form: two answers with the same form are equal.

    Used when math-verify finds no expression (e.g. `\text{(A)}`, words) and as a second chance when it finds
    two that it cannot prove equal.
    """
    s = last_boxed(s) or s
    s = s.replace("\n", "").replace("\\!", "").replace("\\,", "").replace("\\;", "").replace("\\ ", "")
    s = s.replace("tfrac", "frac").replace("dfrac", "frac").replace("\\left", "").replace("\\right", "")
    s = s.replace("^{\\circ}", "").replace("^\\circ", "").replace("\\$", "").replace("$", "")
    s = s.replace("\\%", "").replace("%", "")
    s = re.sub(r"(.)\\(?:text|mbox|mathrm)\{\s*[A-Za-z ]*\}\s*$", r"\1", s)  # trailing unit: "10\text{ cm}"
    s = re.sub(r"^\\(?:text|mbox|mathrm)\{(.*)\}$", r"\1", s)  # whole answer in \text{}
    s = re.sub(r"\\sqrt(\w)", r"\\sqrt{\1}", s)
    if "=" in s and len(s.split("=")) == 2 and len(s.split("=")[0].strip()) <= 2:  # "x = 5" -> "5"
        s = s.split("=")[1]
    s = s.replace(" ", "").rstrip(".")
    s = s.replace("{.", "{0.")
    if s.startswith("."):
        s = "0" + s
    s = _fix_fracs(s)
    if m := re.fullmatch(r"(-?\d+)/(\d+)", s):
        s = f"\\frac{{{m.group(1)}}}{{{m.group(2)}}}"
    s = _canonical_number(s)
    return "\\frac{1}{2}" if s == "0.5" else s


def verify(problem: Problem, output: str) -> Verdict:
    r"""`verify(p, "0.5")` is correct when `p.answer` is `\dfrac{1}{2}`; gold is parsed and passed first."""
    if not output.strip():
        return Verdict(status="unparseable", reason="empty answer")
    mv, _ = _math_verify()
    gold, pred = parse(problem.answer), parse(output)
    normal_gold, normal_pred = strip_string(problem.answer), strip_string(output)
    if gold and pred:
        # Order matters: math-verify treats the first argument as the reference (e.g. for intervals vs sets).
        if mv.verify(gold, pred, timeout_seconds=None) or normal_gold == normal_pred:
            return Verdict(status="correct", parsed_answer=pred[-1], reason="equivalent to the gold answer")
        return Verdict(status="wrong", parsed_answer=pred[-1], reason=f"{pred[-1]} is not equivalent to {gold[-1]}")
    if normal_gold == normal_pred:
        return Verdict(status="correct", parsed_answer=normal_pred, reason="same normalised string as the gold answer")
    if not pred:
        return Verdict(status="unparseable", parsed_answer=normal_pred, reason="no math expression found in the answer")
    return Verdict(
        status="wrong", parsed_answer=pred[-1], reason=f"{pred[-1]} differs from the gold {normal_gold!r} (gold not parsed)"
    )
