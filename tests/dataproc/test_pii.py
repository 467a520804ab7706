"""PII redaction: email/IPv4 decisions equal datatrove's PIIFormatter on real data; phone and IPv6
formats against hand-written expectations; the ``pii`` step of ``dataproc run`` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dataproc.errors import ConfigError
from dataproc.pii import PIIRedactor


def _redact(texts: list[str | None], **kw) -> tuple[list[str | None], dict[str, int]]:
    batch = pa.RecordBatch.from_arrays([pa.array(texts, pa.string())], ["text"])
    out, counts = PIIRedactor(**kw)(batch)
    return out.column(0).to_pylist(), counts


@pytest.fixture(scope="module")
def section_texts(docs_sections: Path) -> list[str]:
    return pq.read_table(docs_sections, columns=["text"]).column("text").to_pylist()


@pytest.mark.parametrize("public_only", [True, False])
def test_email_and_ipv4_decisions_equal_datatrove_on_docs_sections(section_texts, public_only: bool) -> None:
    from datatrove.pipeline.formatters.pii import PIIFormatter

    # datatrove rotates through its replacements; one fixed replacement per kind makes outputs comparable
    peer = PIIFormatter(remove_emails=public_only, only_remove_public_ips=public_only,
                        email_replacement="<EMAIL>", ip_replacement="<IP_ADDRESS>")
    expected = [peer.format(t) for t in section_texts]
    kinds = ["email", "ipv4"] if public_only else ["ipv4"]
    got, counts = _redact(section_texts, kinds=kinds, public_ips_only=public_only)
    differ = [i for i, (a, b) in enumerate(zip(got, expected, strict=True)) if a != b]
    assert not differ, f"{len(differ)} documents differ from datatrove's, first row {differ[:1]}"
    changed = sum(a != b for a, b in zip(expected, section_texts, strict=True))
    assert counts["documents_changed"] == changed
    if public_only:  # the file holds real addresses of both kinds: the comparison is not vacuous
        assert counts["email"] > 3000 and counts["ipv4"] > 500 and changed > 2000
    else:
        public = _redact(section_texts, kinds=["ipv4"])[1]["ipv4"]
        assert counts["ipv4"] > public > 500  # private and reserved addresses are replaced too


PHONES = [
    ("call (415) 555-2671 now", "call <PHONE_NUMBER> now"),
    ("call (415)555-2671.", "call <PHONE_NUMBER>."),
    ("415-555-2671, 415.555.2671 or 415 555 2671", "<PHONE_NUMBER>, <PHONE_NUMBER> or <PHONE_NUMBER>"),
    ("toll free 1-800-555-0199", "toll free <PHONE_NUMBER>"),
    ("intl +1 415 555 2671 / +44 20 7946 0958", "intl <PHONE_NUMBER> / <PHONE_NUMBER>"),
    ("tel:+14155552671", "tel:<PHONE_NUMBER>"),
    # kept: no area code, unseparated, area code or exchange starting 0/1, glued to a word or number,
    # E.164 starting +0 or too short, dates and ISBNs
    ("ext 555-2671", "ext 555-2671"),
    ("id 4155552671", "id 4155552671"),
    ("(015) 555-2671 and 415-155-2671", "(015) 555-2671 and 415-155-2671"),
    ("x415-555-2671 and 12415-555-2671", "x415-555-2671 and 12415-555-2671"),
    ("+0 123 456 789 and +1234567", "+0 123 456 789 and +1234567"),
    ("2023-01-15, ISBN 978-3-16-148410-0", "2023-01-15, ISBN 978-3-16-148410-0"),
]


@pytest.mark.parametrize("text,expected", PHONES)
def test_phone_formats(text: str, expected: str) -> None:
    got, counts = _redact([text], kinds=["phone"])
    assert got == [expected]
    assert counts["phone"] == expected.count("<PHONE_NUMBER>")


def test_ip_ranges_and_ipv6() -> None:
    texts = ["dns 8.8.8.8 lan 192.168.1.1 lo 127.0.0.1 doc 192.0.2.7 zero-padded 08.08.08.08",
             "v6 2001:4860:4860::8888 doc 2001:db8::1 ll fe80::1:2:3 lo ::1",
             "code std::vector a::b at 12:30:45 and 2001:4860:4860::8888x"]
    got, counts = _redact(texts, kinds=["ipv4", "ipv6"])
    assert got == ["dns <IP_ADDRESS> lan 192.168.1.1 lo 127.0.0.1 doc 192.0.2.7 zero-padded 08.08.08.08",
                   "v6 <IP_ADDRESS> doc 2001:db8::1 ll fe80::1:2:3 lo ::1",
                   "code std::vector a::b at 12:30:45 and 2001:4860:4860::8888x"]
    assert counts == {"ipv4": 1, "ipv6": 1, "documents_changed": 2}
    got, counts = _redact(texts[:2], kinds=["ipv4", "ipv6"], public_ips_only=False)
    assert got == ["dns <IP_ADDRESS> lan <IP_ADDRESS> lo <IP_ADDRESS> doc <IP_ADDRESS> zero-padded 08.08.08.08",
                   "v6 <IP_ADDRESS> doc <IP_ADDRESS> ll <IP_ADDRESS> lo ::1"]


def test_everything_else_is_left_alone() -> None:
    texts = ["mail jo.doe+x@mail.example.org or [x]@[10.2.3.4]!", None, "", "héllo wörld 😀, nothing here"]
    got, counts = _redact(texts, placeholders={"email": "[email]"})
    assert got == ["mail [email] or [x]@[10.2.3.4]!", None, "", "héllo wörld 😀, nothing here"]
    assert counts == {"email": 1, "ipv4": 0, "phone": 0, "documents_changed": 1}
    with pytest.raises(ValueError, match="pii kinds"):
        PIIRedactor(kinds=["ssn"])


def test_pii_step_of_dataproc_run(docs_sections: Path, tmp_path: Path) -> None:
    from dataproc.config import load_config
    from dataproc.pipeline import run_pipeline

    table = pq.read_table(docs_sections).slice(0, 9000)
    inputs = tmp_path / "in"
    inputs.mkdir()
    for i in range(3):
        pq.write_table(table.slice(3000 * i, 3000), inputs / f"part-{i}.parquet")
    base = {"input": str(inputs), "output": str(tmp_path / "out"), "pii": {},
            "exact_dedup": {"enabled": False}, "minhash": {"enabled": False}, "execution": {"tasks": 3}}
    cfg = load_config(None, [], base=base)
    assert cfg.pii.enabled and cfg.pii.kinds == ["email", "ipv4", "phone"]
    result = run_pipeline(cfg, progress=False)
    assert result["balanced"] and result["kept"] == 9000 and result["removed"] == 0
    kept = pq.read_table(sorted((tmp_path / "out" / "pii" / "kept").glob("*.parquet")))
    assert kept.drop(["text"]).equals(table.drop(["text"]))  # every other column, in input order
    expected, counts = _redact(table.column("text").to_pylist())
    assert kept.column("text").to_pylist() == expected
    stats = json.loads((tmp_path / "out" / "pii" / "stats.json").read_text())
    assert stats["pii"]["replaced"] == {k: counts[k] for k in ("email", "ipv4", "phone")}
    assert stats["pii"]["documents_changed"] == counts["documents_changed"] > 0
    # a config section turns it on; an unknown kind is an error naming the key
    assert not load_config(None, [], base={"input": "i", "output": "o"}).pii.enabled
    with pytest.raises(ConfigError, match=r"pii\.kinds"):
        load_config(None, ["pii.kinds=[email, ssn]"], base={"input": "i", "output": "o"})
