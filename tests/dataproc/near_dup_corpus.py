"""A near-duplicate test corpus from real text, with crawl-style edits and exact ground truth.

Base documents are real prose from three places: sections of the shared documentation
corpus (``docs_sections.parquet``; one release per source, so its own version copies do not
dominate), the long descriptions and licence texts shipped in this environment's
``site-packages/*.dist-info``, and module docstrings of Python's standard library (read with
``ast``, nothing imported). From them, deterministically (``seed``), crawl-style variants:

* ``copy``      whitespace/case changes only (exact Jaccard 1.0);
* ``boiler``    a site header and footer added (one of several site templates);
* ``trunc``     the last 5-20% of sentences cut;
* ``reorder``   paragraphs shuffled;
* ``insert``    sentences of another base document inserted (10-25% of the length);
* ``bridge``    half of another family's base inserted: links two families, the case that
  makes connected components chain different documents together;
* ``chain``     syndication: A -> A1 -> A2 -> A3, each hop a new site template, a small cut
  and one inserted sentence (hops near each other, ends further apart);
* ``band``      35-50% of the sentences replaced by other documents' (pairs in 0.5-0.7).

All documents are shuffled, so copies often come before their original. Ground truth is the
exact Jaccard of word 5-gram sets as ``shingle_ref`` (the documented shingling) defines them.
"""

from __future__ import annotations

import ast
import glob
import random
import re
import sys
from pathlib import Path

from tests.dataproc import shingle_ref as ref

_SENT = re.compile(r"(?<=[.!?])\s+")
HEADERS = ["Skip to main content. Home | News | Topics | About us | Contact | Sign in",
           "Menu Search Subscribe Log in. You are reading the archive edition of this page.",
           "Breaking: latest updates from our newsroom. Share on social media. Print this article.",
           "Advertisement. Continue reading below. Related stories are listed at the end.",
           "Documentation mirror, updated nightly from upstream sources. Report a problem with this page."]
FOOTERS = ["Copyright 2024 Example Media Group. All rights reserved. Privacy policy. Terms of use. Cookie settings.",
           "This article was syndicated from a partner site. Republished with permission. Contact the editors.",
           "Subscribe to our newsletter for weekly updates. Follow us. Unsubscribe at any time. Accessibility.",
           "Was this page helpful? Yes No. Edit this page on the source repository. Last updated recently.",
           "Comments are closed. Tags: news, updates, archive. Previous article. Next article. Back to top."]


def _words(text: str) -> int:
    return len(text.split())


def _chunks(paragraphs: list[str], lo: int = 150, hi: int = 700) -> list[str]:
    """Consecutive paragraphs grouped into documents of ``lo``..``hi`` words."""
    out, cur, n = [], [], 0
    for p in paragraphs:
        p = p.strip()
        if not p:
            continue
        cur.append(p)
        n += _words(p)
        if n >= hi:
            out.append("\n\n".join(cur))
            cur, n = [], 0
    if n >= lo:
        out.append("\n\n".join(cur))
    return [d for d in out if lo <= _words(d) <= 2 * hi]


def package_prose() -> list[str]:
    """Prose shipped in site-packages (dist-info long descriptions, licences) and stdlib docstrings."""
    site = next(p for p in sys.path if p.endswith("site-packages"))
    docs: list[str] = []
    for path in sorted(glob.glob(f"{site}/*.dist-info/METADATA")):
        if Path(path).parent.name.startswith("llmstack-"):  # our own README: it changes with every commit
            continue
        body = Path(path).read_text(errors="replace").split("\n\n", 1)
        if len(body) == 2:
            docs += _chunks(re.split(r"\n\s*\n", body[1]))
    licences = glob.glob(f"{site}/*.dist-info/LICENSE*") + glob.glob(f"{site}/*.dist-info/licenses/**", recursive=True)
    for path in sorted(p for p in licences if Path(p).is_file()):
        docs += _chunks(re.split(r"\n\s*\n", Path(path).read_text(errors="replace")))
    lib = Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    for path in sorted(lib.glob("*.py")):
        try:
            doc = ast.get_docstring(ast.parse(path.read_text(errors="replace")))
        except (SyntaxError, ValueError):
            continue
        if doc:
            docs += _chunks(re.split(r"\n\s*\n", doc), lo=120)
    # Licence texts repeat across packages: keep one of each exact text.
    return list(dict.fromkeys(docs))


def docs_prose(path: str, n: int, seed: int) -> list[str]:
    import polars as pl

    df = pl.read_parquet(path, columns=["text", "source"])
    df = df.filter(pl.col("source").is_in(["python-3.11-rst", "linux-doc-6.1-rst", "postgresql-15-html"]))
    words = df["text"].str.split(" ").list.len()
    df = df.filter((words >= 150) & (words <= 1200)).sample(n=n, seed=seed)
    return df["text"].to_list()


def _sentences(text: str) -> list[str]:
    return [s for s in _SENT.split(text) if s.strip()]


def _paragraphs(text: str) -> list[str]:
    ps = [p for p in re.split(r"\n\s*\n", text) if p.strip()]
    if len(ps) >= 3:
        return ps
    s = _sentences(text)
    return [" ".join(s[i:i + 3]) for i in range(0, len(s), 3)]


def _insert(rng: random.Random, text: str, extra: list[str]) -> str:
    s = _sentences(text)
    for e in extra:
        s.insert(rng.randrange(len(s) + 1), e)
    return " ".join(s)


def _site(rng: random.Random, text: str) -> str:
    return f"{rng.choice(HEADERS)}\n\n{text}\n\n{rng.choice(FOOTERS)}"


def _cut(rng: random.Random, text: str, lo: float, hi: float) -> str:
    s = _sentences(text)
    return " ".join(s[: max(1, round(len(s) * (1 - rng.uniform(lo, hi))))])


def build(docs_path: str, n_docs_sections: int = 500, seed: int = 0) -> list[dict]:
    """Documents as dicts ``{id, text, family, edit}`` in shuffled order."""
    rng = random.Random(seed)
    bases = docs_prose(docs_path, n_docs_sections, seed) + package_prose()
    bases = [b for b in bases if len(_sentences(b)) >= 6]
    out = [{"text": b, "family": i, "edit": "base"} for i, b in enumerate(bases)]

    def other(i: int) -> str:
        j = rng.randrange(len(bases) - 1)
        return bases[j + (j >= i)]

    for i, base in enumerate(bases):
        kind = rng.choice(["copy", "boiler", "trunc", "reorder", "insert", "bridge", "chain", "band", "none", "none"])
        variants: list[tuple[str, str]] = []
        if kind == "copy":
            variants.append(("copy", "  ".join(base.upper().split()) if rng.random() < 0.5 else base + "\n"))
        elif kind == "boiler":
            variants += [("boiler", _site(rng, base)) for _ in range(rng.randint(1, 3))]
        elif kind == "trunc":
            variants.append(("trunc", _cut(rng, base, 0.05, 0.2)))
        elif kind == "reorder":
            ps = _paragraphs(base)
            rng.shuffle(ps)
            variants.append(("reorder", "\n\n".join(ps)))
        elif kind == "insert":
            src = _sentences(other(i))
            k = max(1, round(len(_sentences(base)) * rng.uniform(0.1, 0.25)))
            variants.append(("insert", _insert(rng, base, [rng.choice(src) for _ in range(k)])))
        elif kind == "bridge":
            src = _sentences(other(i))
            variants.append(("bridge", _insert(rng, base, src[: len(src) // 2])))
        elif kind == "chain":
            cur = base
            for hop in range(3):
                cur = _insert(rng, _cut(rng, cur, 0.02, 0.06), [rng.choice(_sentences(other(i)))])
                variants.append((f"chain{hop + 1}", _site(rng, cur)))
        elif kind == "band":
            s = _sentences(base)
            for _ in range(rng.randint(1, 2)):
                t = list(s)
                for j in rng.sample(range(len(t)), round(len(t) * rng.uniform(0.35, 0.5))):
                    t[j] = rng.choice(_sentences(other(i)))
                variants.append(("band", " ".join(t)))
        out += [{"text": t, "family": i, "edit": e} for e, t in variants]
    rng.shuffle(out)
    for k, d in enumerate(out):
        d["id"] = f"doc{k:06d}"
    return out


def similar_pairs(texts: list[str], threshold: float = 0.5) -> dict[tuple[int, int], float]:
    """Every pair ``(i, j)``, ``i < j``, with exact Jaccard >= ``threshold``."""
    return ref.similar_pairs([ref.shingle_set(t) for t in texts], threshold)
