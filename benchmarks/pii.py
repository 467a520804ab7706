"""PII redaction (emails and IPv4) against datatrove's PIIFormatter, on the same documents in the same run.

datatrove: ``PIIFormatter.format`` over every document's text (one process), the way its pipeline
calls it, with one fixed replacement per kind so the outputs can be compared. Ours:
``dataproc.pii.PIIRedactor`` over the Arrow text column (batches of ``--batch-size`` rows), from
the Arrow array to the redacted Arrow array. Each side: best of ``--repeats``; ours measured
before and after the peer so a change in machine load shows. The outputs must be identical,
document for document (the script fails otherwise). A second row adds phone numbers to ours
(no datatrove counterpart) to show what the third kind costs.

    python benchmarks/pii.py                    # docs_sections.parquet, 62,744 documents
    python benchmarks/pii.py --smoke            # 2,000 documents: harness check (temporary folder)

Writes ``pii.csv`` to ``--output-dir``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from _results import add_output_arg, output_dir, write_csv, written  # noqa: E402
from _timing import best_of, versions  # noqa: E402

from dataproc.pii import PIIRedactor  # noqa: E402

DEFAULT_INPUT = ROOT.parent / "shared" / "data" / "docs_sections.parquet"


def ours(texts: pa.ChunkedArray, redactor: PIIRedactor, batch_size: int) -> tuple[list[pa.Array], dict[str, int]]:
    out, total = [], {}
    for batch in pa.Table.from_arrays([texts], ["text"]).to_batches(batch_size):
        red, counts = redactor(batch)
        out.append(red.column(0))
        for k, v in counts.items():
            total[k] = total.get(k, 0) + v
    return out, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--input", type=Path, default=DEFAULT_INPUT)
    parser.add_argument("--batch-size", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="2,000 documents, 1 repeat")
    add_output_arg(parser)
    args = parser.parse_args()
    from datatrove.pipeline.formatters.pii import PIIFormatter

    texts = pq.read_table(args.input, columns=["text"]).column("text")
    if args.smoke:
        texts, args.repeats = texts.slice(0, 2000), 1
    out = output_dir(args.output_dir, args.smoke, "pii")
    mb = sum(c.nbytes for c in texts.chunks) / 1e6
    redactor = PIIRedactor(kinds=["email", "ipv4"])
    ours(texts, redactor, args.batch_size)  # warm: regex compile, Arrow kernels
    ours_before = best_of(lambda: ours(texts, redactor, args.batch_size), args.repeats)
    peer = PIIFormatter(email_replacement="<EMAIL>", ip_replacement="<IP_ADDRESS>")
    pylist = texts.to_pylist()
    expected: list[str] = []

    def run_peer() -> None:
        expected[:] = [peer.format(t) for t in pylist]

    peer_s = best_of(run_peer, args.repeats)
    ours_after = best_of(lambda: ours(texts, redactor, args.batch_size), args.repeats)
    arrays, counts = ours(texts, redactor, args.batch_size)
    got = [x for a in arrays for x in a.to_pylist()]
    differ = sum(a != b for a, b in zip(got, expected, strict=True))
    if differ:
        raise SystemExit(f"{differ} documents differ from datatrove's PIIFormatter")
    mine = min(ours_before, ours_after)
    phone = PIIRedactor(kinds=["email", "ipv4", "phone"])
    ours(texts, phone, args.batch_size)
    phone_s = best_of(lambda: ours(texts, phone, args.batch_size), args.repeats)
    phone_counts = ours(texts, phone, args.batch_size)[1]
    rows = [{"kinds": "email+ipv4", "docs": len(texts), "text_mb": round(mb, 1), "datatrove_s": round(peer_s, 3),
             "ours_s": round(mine, 3), "ours_s_before_after": f"{ours_before:.3f} {ours_after:.3f}",
             "speedup": round(peer_s / mine, 1), "identical_docs": len(texts) - differ,
             "emails": counts["email"], "ipv4": counts["ipv4"], "phones": "", "docs_changed": counts["documents_changed"]},
            {"kinds": "email+ipv4+phone", "docs": len(texts), "text_mb": round(mb, 1), "datatrove_s": "",
             "ours_s": round(phone_s, 3), "ours_s_before_after": "", "speedup": "", "identical_docs": "",
             "emails": phone_counts["email"], "ipv4": phone_counts["ipv4"], "phones": phone_counts["phone"],
             "docs_changed": phone_counts["documents_changed"]}]
    print(f"{len(texts):,} docs, {mb:.0f} MB: datatrove PIIFormatter {peer_s:.2f} s, ours {mine:.3f} s "
          f"(before/after the peer {ours_before:.3f}/{ours_after:.3f}): {peer_s / mine:.1f}x vs peer; "
          f"outputs identical on all {len(texts):,} documents ({counts['email']} emails, {counts['ipv4']} IPv4 "
          f"replaced in {counts['documents_changed']} documents); with phone numbers too: {phone_s:.3f} s "
          f"({phone_counts['phone']} phone numbers)")
    print("versions:", versions(["datatrove", "pyarrow"]))
    write_csv(out, "pii.csv", rows)
    print(written(out, args.smoke, "pii.csv"))


if __name__ == "__main__":
    main()
