"""spaCy's blank-English tokenizer rules, rebuilt as lookup tables for the compiled kernels.

datatrove counts words with ``spacy.blank("en")`` and sentences with its sentencizer. We do
not run spaCy: :mod:`dataproc.text.words` re-implements its algorithm over code points, and
this module supplies the data that algorithm needs, built once per process:

* :func:`char_table` — one ``uint32`` of class bits per code point (``0 .. 0x10FFFF``): Python's
  ``str.isspace``/``isalpha``/``isdecimal``, datatrove's ``PUNCTUATION_SET`` and
  ``TERMINAL_PUNCTUATION``, ``str.splitlines`` boundaries, and spaCy's character classes
  (ALPHA / ALPHA_LOWER / ALPHA_UPPER, quotes, icons, prefix/suffix punctuation...).
* :func:`special_cases` / :func:`packed_specials` — spaCy's English tokenizer exceptions
  ("don't" → "do" "n't", "e.g.", emoticons...) as chunk → token lengths.
* :func:`packed_units` — the unit and currency strings spaCy splits off after a digit.

The tables are written from spaCy 3.8's rule definitions; the oracle tests check them against
spaCy itself (``tests/dataproc/test_filters_vs_datatrove.py``).
"""

from __future__ import annotations

import functools
import unicodedata

import numpy as np
from datatrove.utils.text import PUNCTUATION_SET, TERMINAL_PUNCTUATION

# Class bits of :func:`char_table`.
WS = 1 << 0  # str.isspace
ALPHA = 1 << 1  # str.isalpha
DT_PUNCT = 1 << 2  # datatrove PUNCTUATION_SET
TERM = 1 << 3  # datatrove TERMINAL_PUNCTUATION
U_PUNCT = 1 << 4  # unicodedata category P* (spaCy's Token.is_punct)
SENT = 1 << 5  # spaCy sentencizer punct_chars
SA = 1 << 6  # spaCy ALPHA
SL = 1 << 7  # spaCy ALPHA_LOWER
SU = 1 << 8  # spaCy ALPHA_UPPER
QUOTE = 1 << 9  # spaCy CONCAT_QUOTES
PREFIX = 1 << 10  # always a one-character prefix
SUFFIX = 1 << 11  # always a one-character suffix
ICON = 1 << 12  # spaCy LIST_ICONS
DOT_LB = 1 << 13  # may precede a split-off final "." (suffix lookbehind)
DECIMAL = 1 << 14  # str.isdecimal (regex \d)
LINE_BREAK = 1 << 15  # str.splitlines boundary
HOST = 1 << 16  # URL host character [A-Za-z0-9\u00a1-\uffff]
WORD = 1 << 17  # regex \w
CURRENCY = 1 << 18  # one-character currency symbol
HYPHEN = 1 << 19  # one-character hyphen of spaCy's HYPHENS
PLAIN = 1 << 20  # no prefix, suffix, infix or URL rule can split at this character
INFIX = 1 << 21  # may start an infix match

_PUNCT = "…,:;!?¿؟¡()[]{}<>_#*&。？！，、；：～·।،۔؛٪"
_QUOTES = "'\"”“`‘´’‚,„»«「」『』（）〔〕【】《》〈〉\u2329\u232a⟦⟧"
_CURRENCY1 = "$£€¥฿₽﷼" + "".join(map(chr, range(0x20A0, 0x20C0)))
# Strings split off after a digit ("5km", "64MB", "10US$"), besides the one-character currencies.
_UNITS_TEXT = (
    "km km² km³ m m² m³ dm dm² dm³ cm cm² cm³ mm mm² mm³ ha µm nm yd in ft kg g mg µg t lb oz m/s km/h "
    "kmh mph hPa Pa mbar mb MB kb KB gb GB tb TB T G M K % км км² км³ м м² м³ дм дм² дм³ см см² см³ мм "
    "мм² мм³ нм кг г мг м/с км/ч кПа Па мбар Кб КБ кб Мб МБ мб Гб ГБ гб Тб ТБ тбكم كم² كم³ م م² م³ سم "
    "سم² سم³ مم مم² مم³ كم غرام جرام جم كغ ملغ كوب اكواب US$ C$ A$"
)
# datatrove's TERMINAL_PUNCTUATION minus these is the sentencizer's punct_chars.
_SENT_PUNCT_EXTRA = {
    0x61D, 0x61E, 0x837, 0x839, 0x83D, 0x83E, 0x17D4, 0x17D5, 0x17D6, 0x17D9, 0x17DA, 0x1B7D, 0x1B7E,
    0x2E53, 0x2E54, 0x10F55, 0x10F56, 0x10F57, 0x10F58, 0x10F59, 0x10F86, 0x10F87, 0x10F88, 0x10F89,
    0x11944, 0x11946, 0x11EF7, 0x11EF8, 0x11F43, 0x11F44, 0x16E98,
}  # fmt: skip
# "So" symbols added in Unicode 12+ that spaCy's icon class predates.
_NEW_SYMBOLS = (
    (0x166D, 0x166D), (0x2B97, 0x2B97), (0x2BC9, 0x2BC9), (0x2BFF, 0x2BFF), (0x2E50, 0x2E51),
    (0x32FF, 0x32FF), (0xFD40, 0xFD4F), (0xFDCF, 0xFDCF), (0xFDFE, 0xFDFF), (0x1019C, 0x1019C),
    (0x11FD5, 0x11FDC), (0x11FE1, 0x11FF1), (0x1CF50, 0x1CFC3), (0x1D1E9, 0x1D1EA), (0x1E14F, 0x1E14F),
    (0x1ED2E, 0x1ED2E), (0x1F10D, 0x1F10F), (0x1F16C, 0x1F16F), (0x1F1AD, 0x1F1AD), (0x1F6D5, 0x1F6DF),
    (0x1F6FA, 0x1F6FC), (0x1F7E0, 0x1F7EB), (0x1F7F0, 0x1F7F0), (0x1F8B0, 0x1F8B1), (0x1F90C, 0x1F90F),
    (0x1F93F, 0x1F93F), (0x1F971, 0x1F972), (0x1F977, 0x1F979), (0x1F97B, 0x1F97B), (0x1F9A3, 0x1F9AF),
    (0x1F9BA, 0x1F9BF), (0x1F9C3, 0x1F9CF), (0x1FA00, 0x1FA53), (0x1FA70, 0x10FFFF),
)  # fmt: skip

# Scripts spaCy treats as uncased letters (both ALPHA_LOWER and ALPHA_UPPER): whole blocks.
_UNCASED = (
    (0x1200, 0x137F), (0x0980, 0x09FF), (0x0591, 0x05F4), (0xFB1D, 0xFB4F), (0x0620, 0x064A),
    (0x066E, 0x06D5), (0x06E5, 0x06FF), (0x0750, 0x077F), (0x08A0, 0x08BD), (0xFB50, 0xFBB1),
    (0xFBD3, 0xFD3D), (0xFD50, 0xFDC7), (0xFDF0, 0xFDFB), (0xFE70, 0xFEFC), (0x1EE00, 0x1EEBB),
    (0x0D80, 0x0DFF), (0x0900, 0x097F), (0x0C80, 0x0CFF), (0x0B80, 0x0BFF), (0x0C00, 0x0C7F),
    (0xAC00, 0xD7AF), (0x1100, 0x11FF), (0x3040, 0x309F), (0x30A0, 0x30FF), (0x4E00, 0x9FFF),
    (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2EBEF), (0x2E80, 0x2EFF), (0x2F00, 0x2FDF),
    (0x2FF0, 0x303F), (0x31C0, 0x31EF), (0x3200, 0x33FF), (0xF900, 0xFAFF), (0xFE30, 0xFE4F),
    (0x1F200, 0x1F2FF), (0x2F800, 0x2FA1F),
)  # fmt: skip
# Latin blocks spaCy lists letter by letter; case follows Unicode except where noted below.
_LATIN = (
    (0x41, 0x5A), (0x61, 0x7A), (0xFF21, 0xFF3A), (0xFF41, 0xFF5A), (0xC0, 0xD6), (0xD8, 0xF6),
    (0xF8, 0x17F), (0x180, 0x1BF), (0x1C4, 0x24F), (0x250, 0x2AF), (0x1D00, 0x1D25), (0x1D6B, 0x1D77),
    (0x1D79, 0x1D9A), (0x1E00, 0x1EFF), (0x2C60, 0x2C7B), (0x2C7E, 0x2C7F), (0xA722, 0xA76F),
    (0xA771, 0xA787), (0xA78B, 0xA78E), (0xA790, 0xA7B9), (0xA7FA, 0xA7FA), (0xAB30, 0xAB5A),
    (0xAB60, 0xAB64),
)  # fmt: skip
_LATIN_ALWAYS_LOWER = (
    (0x250, 0x2AF), (0x1D00, 0x1D25), (0x1D6B, 0x1D77), (0x1D79, 0x1D9A), (0xAB30, 0xAB5A), (0xAB60, 0xAB64),
)  # fmt: skip
_OTHER_LOWER = "ёабвгдежзийклмнопрстуфхцчшщъыьэюяәөүҗңһα-ωάέίόώήύіїєґѓѕјљњќѐѝ"
_OTHER_UPPER = "ЁАБВГДЕЖЗИЙКЛМНОПРСТУФХЦЧШЩЪЫЬЭЮЯӘӨҮҖҢҺΑ-ΩΆΈΊΌΏΉΎІЇЄҐЃЅЈЉЊЌЀЍ"


def _expand(chars: str) -> list[int]:
    """Code points of a class written like a regex set body ("α-ω" is a range)."""
    out: list[int] = []
    i = 0
    while i < len(chars):
        if i + 2 < len(chars) and chars[i + 1] == "-":
            out.extend(range(ord(chars[i]), ord(chars[i + 2]) + 1))
            i += 3
        else:
            out.append(ord(chars[i]))
            i += 1
    return out


def _mark(table: np.ndarray, bit: int, cps: list[int] | range) -> None:
    table[np.asarray(list(cps), dtype=np.int64)] |= bit


@functools.cache
def char_table() -> np.ndarray:
    """Class bits for every code point (built once, ~1 s)."""
    n = 0x110000
    chars = [chr(c) for c in range(n)]
    table = np.zeros(n, dtype=np.uint32)
    for bit, pred in (
        (WS, str.isspace),
        (ALPHA, str.isalpha),
        (DECIMAL, str.isdecimal),
        (WORD, lambda ch: ch.isalnum() or ch == "_"),
    ):
        table[np.fromiter(map(pred, chars), dtype=bool, count=n)] |= bit
    cats = [unicodedata.category(ch) for ch in chars]
    table[np.fromiter((c[0] == "P" for c in cats), dtype=bool, count=n)] |= U_PUNCT
    # spaCy's icon class is the "So" category of Unicode 11.
    so = np.fromiter((c == "So" for c in cats), dtype=bool, count=n)
    for lo, hi in _NEW_SYMBOLS:
        so[lo : hi + 1] = False
    table[so] |= ICON
    _mark(table, DT_PUNCT, [ord(c) for c in PUNCTUATION_SET])
    _mark(table, TERM, [ord(c) for c in TERMINAL_PUNCTUATION])
    _mark(table, SENT, [ord(c) for c in TERMINAL_PUNCTUATION if ord(c) not in _SENT_PUNCT_EXTRA])
    _mark(table, LINE_BREAK, [0x0A, 0x0B, 0x0C, 0x0D, 0x1C, 0x1D, 0x1E, 0x85, 0x2028, 0x2029])

    lower = np.zeros(n, dtype=bool)
    upper = np.zeros(n, dtype=bool)
    alpha = np.zeros(n, dtype=bool)
    for lo, hi in _LATIN:
        for c in range(lo, hi + 1):
            alpha[c] = True
            lower[c] = chars[c].islower()
            upper[c] = chars[c].isupper()
    for lo, hi in _LATIN_ALWAYS_LOWER:
        lower[lo : hi + 1] = True
        upper[lo : hi + 1] = False
    lower[_expand(_OTHER_LOWER)] = True
    upper[_expand(_OTHER_UPPER)] = True
    for lo, hi in _UNCASED:
        lower[lo : hi + 1] = True
        upper[lo : hi + 1] = True
    alpha |= lower | upper
    table[alpha] |= SA
    table[lower] |= SL
    table[upper] |= SU

    quotes = [ord(c) for c in _QUOTES]
    punct = [ord(c) for c in _PUNCT]
    _mark(table, QUOTE, quotes)
    _mark(table, CURRENCY, [ord(c) for c in _CURRENCY1])
    _mark(table, HYPHEN, [ord(c) for c in "-–—~"])
    _mark(table, PREFIX, [ord(c) for c in "§%=—–"] + punct + quotes + [ord(c) for c in _CURRENCY1])
    _mark(table, SUFFIX, [ord(c) for c in "—–"] + punct + quotes)
    table[so] |= PREFIX | SUFFIX
    # Lookbehind of the suffix rule that splits a final "." (a regex class spaCy builds by
    # pasting its PUNCT alternation and a "(?:...)" group inside brackets, hence "|()?:").
    dot_lb = list(range(ord("0"), ord("9") + 1)) + [ord(c) for c in "%²-+|()?:"] + punct + quotes
    _mark(table, DOT_LB, dot_lb)
    table[lower] |= DOT_LB
    affix = WS | PREFIX | SUFFIX | ICON | QUOTE | HYPHEN | CURRENCY
    table[(table & affix) == 0] |= PLAIN
    table[[ord(c) for c in ".+*^/"]] &= ~np.uint32(PLAIN)
    _mark(table, INFIX, [ord(c) for c in ".…+-*^,:<>=/"] + [ord(c) for c in "-–—~"])
    table[so] |= INFIX
    host = [*range(0x30, 0x3A), *range(0x41, 0x5B), *range(0x61, 0x7B), *range(0xA1, 0x10000)]
    _mark(table, HOST, host)
    return table


def _english_contractions() -> dict[str, tuple[str, ...]]:
    """The contraction exceptions, as chunk → token texts (spaCy's en/tokenizer_exceptions)."""
    exc: dict[str, tuple[str, ...]] = {}

    def both_cases(word: str) -> tuple[str, str]:
        return word, word.title()

    def add(head: str, *tails: str) -> None:
        exc[head + "".join(tails)] = (head, *tails)

    for orth in both_cases("i"):
        add(orth, "'m")
        add(orth, "m")
        add(orth, "'m", "a")
        add(orth, "m", "a")
    forms = {
        "ll": ("i you he she it we they who what when where why how there that this these those"),
        "d": ("i you he she it we they who what when where why how there that this these those"),
        "ve": "i you we they who what when where why how there these those",
        "re": "you we they who what when where why how there these those",
        "s": "he she it who what when where why how there that this",
    }
    for suffix, words in forms.items():
        for word in words.split():
            for orth in both_cases(word):
                add(orth, "'" + suffix)
                add(orth, suffix)
                if suffix in ("ll", "d"):
                    add(orth, "'" + suffix, "'ve")
                    add(orth, suffix, "ve")
    n_t_verbs = ("ca", "could", "do", "does", "did", "had", "may", "might", "must", "need", "ought", "sha")
    for verb in (*n_t_verbs, "should", "wo", "would"):
        for orth in both_cases(verb):
            add(orth, "n't")
            add(orth, "nt")
            add(orth, "n't", "'ve")
            add(orth, "nt", "ve")
    for verb in ("could", "might", "must", "should", "would"):
        for orth in both_cases(verb):
            add(orth, "'ve")
            add(orth, "ve")
    for verb in ("ai", "are", "is", "was", "were", "have", "has", "dare"):
        for orth in both_cases(verb):
            add(orth, "n't")
            add(orth, "nt")
    for word in ("doin", "goin", "nothin", "nuthin", "ol", "somethin"):
        for orth in both_cases(word):
            add(orth)
            add(orth + "'")
    for word in ("em", "ll", "nuff"):
        add(word)
        add("'" + word)
    for hour in range(1, 13):
        for period in ("a.m.", "am", "p.m.", "pm"):
            add(str(hour), period)
    for chunk, toks in (
        ("y'all", ("y'", "all")), ("yall", ("y", "all")), ("how'd'y", ("how", "'d", "'y")),
        ("How'd'y", ("How", "'d", "'y")), ("not've", ("not", "'ve")), ("notve", ("not", "ve")),
        ("Not've", ("Not", "'ve")), ("Notve", ("Not", "ve")), ("cannot", ("can", "not")),
        ("Cannot", ("Can", "not")), ("gonna", ("gon", "na")), ("Gonna", ("Gon", "na")),
        ("gotta", ("got", "ta")), ("Gotta", ("Got", "ta")), ("let's", ("let", "'s")),
        ("Let's", ("Let", "'s")), ("c'mon", ("c'm", "on")), ("C'mon", ("C'm", "on")),
    ):  # fmt: skip
        exc[chunk] = toks
    return exc


# One-token exceptions: abbreviations whose final "." must not split, apostrophe words.
_SINGLE_TOKEN = (
    "'S 's ‘S ‘s and/or w/o 're 'Cause 'cause 'cos 'Cos 'coz 'Coz 'cuz 'Cuz 'bout ma'am Ma'am o'clock "
    "O'clock lovin' Lovin' lovin Lovin havin' Havin' havin Havin doin' Doin' doin Doin goin' Goin' goin "
    "Goin Mt. Ak. Ala. Apr. Ariz. Ark. Aug. Calif. Colo. Conn. Dec. Del. Feb. Fla. Ga. Ia. Id. Ill. Ind. "
    "Jan. Jul. Jun. Kan. Kans. Ky. La. Mar. Mass. Mich. Minn. Miss. N.C. N.D. N.H. N.J. N.M. N.Y. Neb. "
    "Nebr. Nev. Nov. Oct. Okla. Ore. Pa. S.C. Sep. Sept. Tenn. Va. Wash. Wis. 'd a.m. Adm. Bros. co. Co. "
    "Corp. D.C. Dr. e.g. E.g. E.G. Gen. Gov. i.e. I.e. I.E. Inc. Jr. Ltd. Md. Messrs. Mo. Mont. Mr. "
    "Mrs. Ms. p.m. Ph.D. Prof. Rep. Rev. Sen. St. vs. v.s."
)
_EXCLUDED = ("Ill", "ill", "Its", "its", "Hell", "hell", "Shell", "shell", "Shed", "shed", "were", "Were", "Well", "well", "Whore", "whore")  # fmt: skip
# Language-independent exceptions: letters with a period, emoticons, a few escapes.
_BASE_SINGLE = (
    "\\t \\n \u2014 ' \\\") <space> '' C++ ä. ö. ü. "
    + " ".join(chr(c) + "." for c in range(ord("a"), ord("z") + 1))
    + " :) :-) :)) :-)) :))) :-))) (: (-: =) (= :] :-] [: [-: [= =] :o) (o: :} :-} 8) 8-) (-8 ;) ;-) (; "
    "(-; :( :-( :(( :-(( :((( :-((( ): )-: =( >:( :') :'-) :'( :'-( :/ :-/ =/ =| :| :-| ]= =[ :1 :P "
    ":-P :p :-p :O :-O :o :-o :0 :-0 :() >:o :* :-* :3 :-3 =3 :> :-> :X :-X :x :-x :D :-D ;D ;-D =D "
    "xD XD xDD XDD 8D 8-D ^_^ ^__^ ^___^ >.< >.> <.< ._. ;_; -_- -__- v.v V.V v_v V_V o_o o_O O_o O_O "
    "0_o o_0 0_0 o.O O.o O.O o.o 0.0 o.0 0.o @_@ <3 <33 <333 </3 (^_^) (-_-) (._.) (>_<) (*_*) (¬_¬) "
    "ಠ_ಠ ಠ︵ಠ (ಠ_ಠ) ¯\\(ツ)/¯ (╯°□°）╯︵┻━┻ ><(((*>"
)


@functools.cache
def special_cases() -> dict[str, tuple[int, ...]]:
    """spaCy English tokenizer exceptions: chunk → lengths (code points) of its tokens.

    Whitespace-only exceptions are left out (our chunks never contain whitespace).
    """
    exc: dict[str, tuple[str, ...]] = {s: (s,) for s in _BASE_SINGLE.split()}
    for unit in "cfkCFK":
        exc[f"°{unit}."] = ("°", unit, ".")
    exc.update(_english_contractions())
    exc.update({s: (s,) for s in _SINGLE_TOKEN.split()})
    for word in _EXCLUDED:
        exc.pop(word, None)
    # spaCy adds a variant with typographic apostrophes of every exception with "'".
    for chunk, toks in list(exc.items()):
        if "'" in chunk:
            exc[chunk.replace("'", "’")] = tuple(t.replace("'", "’") for t in toks)
    return {chunk: tuple(len(t) for t in toks) for chunk, toks in exc.items()}


def hash_code_points(cps: list[int]) -> int:
    """The 64-bit FNV-1a-style hash the kernels use for short strings (see ``words._hash_span``)."""
    h = 0xCBF29CE484222325
    for c in cps:
        h = ((h ^ c) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


@functools.cache
def packed_specials() -> tuple[np.ndarray, ...]:
    """Open-addressing table of :func:`special_cases` for the kernels.

    Returns ``(slot_hash uint64, slot_id int32 (-1 empty), text int32, text_off int64,
    tok_len int32, tok_off int64, max_len)``; ``max_len`` is a 0-d int64 array.
    """
    items = sorted(special_cases().items())
    cap = 1 << int(np.ceil(np.log2(4 * len(items))))
    slot_hash = np.zeros(cap, dtype=np.uint64)
    slot_id = np.full(cap, -1, dtype=np.int32)
    text: list[int] = []
    text_off = [0]
    tok_len: list[int] = []
    tok_off = [0]
    for sid, (chunk, lengths) in enumerate(items):
        cps = [ord(c) for c in chunk]
        h = hash_code_points(cps)
        slot = h & (cap - 1)
        while slot_id[slot] >= 0:
            slot = (slot + 1) & (cap - 1)
        slot_hash[slot] = h
        slot_id[slot] = sid
        text.extend(cps)
        text_off.append(len(text))
        tok_len.extend(lengths)
        tok_off.append(len(tok_len))
    max_len = np.array(max(len(c) for c, _ in items), dtype=np.int64)
    return (
        slot_hash,
        slot_id,
        np.array(text, dtype=np.int32),
        np.array(text_off, dtype=np.int64),
        np.array(tok_len, dtype=np.int32),
        np.array(tok_off, dtype=np.int64),
        max_len,
    )


@functools.cache
def packed_units() -> tuple[np.ndarray, np.ndarray]:
    """Units and multi-character currencies split off after a digit: ``(text int32, off int64)``."""
    units = sorted(set(_UNITS_TEXT.split()))
    text = np.array([ord(c) for u in units for c in u], dtype=np.int32)
    off = np.cumsum([0] + [len(u) for u in units]).astype(np.int64)
    return text, off
