"""The ``dataproc`` command line: filter, dedup, run a whole pipeline, build a sample corpus.

Each command prints progress bars while it runs and one summary line at the end. Bad input
(a missing file, a bad column or option value) ends it with one ``dataproc <command>: error:
...`` line on stderr naming the file, row, field or key, and a non-zero exit status: 2 for
:class:`~dataproc.errors.DataError` / :class:`~dataproc.errors.ConfigError`, 1 for any other
``ValueError``, ``KeyError``, ``TypeError`` or ``OSError``. ``dataproc --verbose <command>``
also shows datatrove's logging and the traceback of an error.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from typing import Any

from dataproc.config import ExecutionConfig, MinHashConfig, PipelineConfig, ReadConfig
from dataproc.errors import ConfigError, DataError
from dataproc.filters import DEFAULT_FILTERS
from llmstack.formats import BLEND_FORMAT

EPILOG_FILTER = """examples:
  dataproc filter --input shards/ --output out/filtered
  dataproc filter --input 'data/*.parquet' --output out/f --filters gopher_quality,language --tasks 4 --workers 2
  dataproc filter --input s3://bucket/crawl/ --output out/f --config configs/dataproc/default.yaml
"""
EPILOG_DEDUP = """examples:
  dataproc dedup --input shards/ --output out/dedup                      # MinHash, 5-grams, 18x7 bands
  dataproc dedup --input shards/ --output out/dedup --threshold 0.8      # bands x rows from a threshold
  dataproc dedup --input shards/ --output out/exact --method exact
  dataproc dedup --input shards/ --output out/dedup --tasks 64 --workers 2
every step runs as many tasks as its units allow (input files; bands x key ranges; component
partitions): no step is a single task; rerun the same command to resume after a failure
"""
EPILOG_TOKENIZE = """examples:
  dataproc tokenize --input runs/demo/data/minhash/kept --output-prefix runs/demo/tokens/web \\
      --tokenizer runs/demo/tokenizer.json --workers 2
  dataproc tokenize --input shards/ --output-prefix out/gpt2 --tokenizer ../shared/assets/gpt2.tiktoken
  dataproc tokenize --input shards/ --output-prefix out/x --tokenizer tok.json --eod '</s>' --executor slurm
writes PREFIX.bin + PREFIX.idx (Megatron indexed dataset, EOD after every document) and PREFIX.json
(tokenizer, dtype, documents, tokens, tokens per source); a rerun resumes.
"""
EPILOG_TRAIN_TOK = """examples:
  dataproc train-tokenizer --input runs/demo/data/minhash/kept --output runs/demo/tokenizer.json --vocab-size 8192 \\
      --chat-specials --split-digits
  dataproc train-tokenizer --input shards/ --output tok/ --vocab-size 32000 --max-bytes 200000000
"""
EPILOG_BLEND = """examples:
  dataproc blend --output out/mix.json 0.7 out/web 0.3 out/code
pairs are 'weight prefix' as in Megatron's --data-path; weights are normalised to sum to 1.
"""
EPILOG_RUN = """examples:
  dataproc run configs/dataproc/default.yaml
  dataproc run configs/dataproc/default.yaml input=other/ output=out/x execution.tasks=4 minhash.threshold=0.8
"""


def _d(cls: type, name: str) -> Any:
    """A command-line default: the config dataclass field's default (one source of truth)."""
    from llmstack.config import field_default

    return field_default(cls, name)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", required=True, nargs="+",
                   help="Parquet/JSONL(.gz) file(s), directory, glob or fsspec URL")
    p.add_argument("--output", required=True, help="output directory (local path or fsspec URL)")
    ex, rd = ExecutionConfig, ReadConfig
    p.add_argument("--tasks", type=int, default=_d(ex, "tasks"), help="independent tasks per stage (default %(default)s)")
    p.add_argument("--workers", type=int, default=_d(ex, "workers"),
                   help="tasks run at once by the local executor (default %(default)s)")
    p.add_argument("--executor", choices=("local", "slurm", "ray"), default=_d(ex, "executor"),
                   help="datatrove executor to run the tasks on (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=_d(rd, "batch_size"),
                   help="documents per Arrow batch (default %(default)s)")
    p.add_argument("--text-column", default=_d(rd, "text_column"), help="column holding the text (default %(default)s)")
    p.add_argument("--id-column", default=_d(rd, "id_column"), help="column holding document ids (default %(default)s)")
    p.add_argument("--max-shard-bytes", type=int, default=_d(PipelineConfig, "max_shard_bytes"),
                   help="output shard size bound (bytes, default %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dataproc", description="Filter, language-ID and deduplicate Parquet/JSONL crawl shards.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run `dataproc <command> --help` for the options and examples of each command.")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show datatrove's logging, and the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    f = sub.add_parser("filter", help="quality, language and harmful-content filters",
                       description="Run filters; write kept/, removed/ (with a reason column), quarantine/, stats.json.",
                       epilog=EPILOG_FILTER, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(f)
    f.add_argument("--filters", default=None,
                   help="comma-separated filter names in order (default: the filters of --config, else "
                        f"{','.join(DEFAULT_FILTERS)})")
    f.add_argument("--config", default=None, help="YAML whose `filters:` section sets filters and thresholds")

    d = sub.add_parser("dedup", help="exact or MinHash-LSH near-duplicate removal",
                       description="Deduplicate; write kept/, removed/ (with a duplicate_of column), stats.json.",
                       epilog=EPILOG_DEDUP, formatter_class=argparse.RawDescriptionHelpFormatter)
    _common(d)
    d.add_argument("--method", choices=("minhash", "exact"), default="minhash")
    mh = MinHashConfig
    d.add_argument("--num-perm", type=int, default=_d(mh, "num_perm"), help="MinHash permutations (default %(default)s)")
    d.add_argument("--ngram", type=int, default=_d(mh, "ngram"), help="word n-gram size of shingles (default %(default)s)")
    d.add_argument("--bands", type=int, default=None, help=f"LSH bands (default {_d(mh, 'bands')})")
    d.add_argument("--rows", type=int, default=None, help=f"rows per band (default {_d(mh, 'rows')})")
    d.add_argument("--threshold", type=float, default=None,
                   help="Jaccard threshold; picks bands x rows instead of --bands/--rows (every candidate "
                        "pair is verified against 0.8, or against this threshold when given)")
    d.add_argument("--verify", choices=("hybrid", "estimate", "exact"), default=_d(mh, "verify"),
                   help="check each candidate pair by its full signatures' Jaccard estimate, and by the exact "
                        "shingle Jaccard when the estimate is within 3 standard errors of the threshold "
                        "(hybrid, default); by the estimate alone (estimate: fastest, a pair at the threshold "
                        "itself passes half the time); or by the exact Jaccard for every candidate (exact)")
    d.add_argument("--seed", type=int, default=_d(mh, "seed"), help="hash seed (default %(default)s)")
    d.add_argument("--warn-component-size", type=int, default=_d(mh, "warn_component_size"),
                   help="warn, naming it, about a connected component of duplicates with more documents "
                        "than this (default %(default)s)")

    r = sub.add_parser("run", help="a whole pipeline from a YAML config",
                       description="read → filters → exact dedup → MinHash dedup → write, as a YAML config "
                                   "describes (see configs/dataproc/); dotted key=value overrides follow.",
                       epilog=EPILOG_RUN, formatter_class=argparse.RawDescriptionHelpFormatter)
    r.add_argument("config", help="pipeline YAML")
    r.add_argument("overrides", nargs="*", help="dotted overrides, e.g. execution.tasks=4")
    r.add_argument("--no-progress", action="store_true", help="no progress bars")

    t = sub.add_parser("tokenize", help="tokenize shards into a Megatron .bin/.idx dataset",
                       description="Tokenize the text of Parquet/JSONL shards into PREFIX.bin/.idx, which "
                                   "megatron-core's IndexedDataset / GPTDataset read.",
                       epilog=EPILOG_TOKENIZE, formatter_class=argparse.RawDescriptionHelpFormatter)
    t.add_argument("--input", required=True, nargs="+", help="Parquet/JSONL(.gz) file(s), directory, glob or URL")
    t.add_argument("--output-prefix", required=True, help="local path prefix of the .bin/.idx/.json output")
    t.add_argument("--tokenizer", required=True,
                   help="tokenizer.json (or a directory holding one), or a .tiktoken ranks file")
    t.add_argument("--eod", default=None, help="end-of-document token (default: <|endoftext|>, </s>, ... "
                                               "whichever the vocabulary has)")
    t.add_argument("--workers", type=int, default=1, help="processes tokenizing at once (default 1)")
    t.add_argument("--tasks", type=int, default=None, help="datatrove tasks (default: --workers)")
    t.add_argument("--executor", choices=("local", "slurm", "ray"), default="local")
    t.add_argument("--text-column", default="text", help="column holding the text (default text)")
    t.add_argument("--source-column", default="source",
                   help="column whose values tokens are counted by, if present (default source)")
    t.add_argument("--batch-size", type=int, default=16_384,
                   help="documents per encode call (default 16384: HF tokenizers encodes large batches "
                        "faster per token, at a few hundred MB per worker)")
    t.add_argument("--unit-rows", type=int, default=16_384,
                   help="rows per work unit: consecutive Parquet row groups are grouped up to this (default 16384)")
    t.add_argument("--on-bad-row", choices=("error", "quarantine"), default="error",
                   help="null/empty/invalid-UTF-8 text: stop with an error naming file and row (default), "
                        "or set the row aside in PREFIX.tokenize/quarantine/ and count it")
    t.add_argument("--overwrite", action="store_true", help="replace a dataset of other inputs at this prefix")
    t.add_argument("--no-progress", action="store_true", help="no progress bars")

    tt = sub.add_parser("train-tokenizer", help="train a byte-level BPE tokenizer (HF tokenizers)",
                        description="Train a byte-level BPE on the text of shards; save tokenizer.json.",
                        epilog=EPILOG_TRAIN_TOK, formatter_class=argparse.RawDescriptionHelpFormatter)
    tt.add_argument("--input", required=True, nargs="+", help="Parquet/JSONL(.gz) file(s), directory, glob or URL")
    tt.add_argument("--output", required=True, help="tokenizer .json file, or a directory for tokenizer.json")
    tt.add_argument("--vocab-size", type=int, default=32000, help="vocabulary size incl. specials (default 32000)")
    tt.add_argument("--min-frequency", type=int, default=2, help="minimum pair count to merge (default 2)")
    tt.add_argument("--special-tokens", default="<|endoftext|>,<|pad|>",
                    help="comma-separated special tokens (default <|endoftext|>,<|pad|>; the first is EOD)")
    tt.add_argument("--text-column", default="text")
    tt.add_argument("--max-docs", type=int, default=None, help="train on at most this many documents")
    tt.add_argument("--max-bytes", type=int, default=None, help="train on at most this many bytes of text")
    tt.add_argument("--chat-specials", action="store_true",
                    help="add the chat template's special tokens (<|system|>,<|user|>,<|assistant|>,<|end|>)")
    tt.add_argument("--split-digits", action="store_true",
                    help="one token per digit: split digits before the byte-level step (as Llama/Qwen do)")
    tt.add_argument("--no-progress", action="store_true", help="no progress bars")

    b = sub.add_parser("blend", help="describe a weighted mixture of tokenized datasets",
                       description="Check tokenized prefixes (same tokenizer) and write the blend JSON the "
                                   "engine reads with megatron-core's BlendedMegatronDatasetBuilder.",
                       epilog=EPILOG_BLEND, formatter_class=argparse.RawDescriptionHelpFormatter)
    b.add_argument("--output", required=True, help="blend JSON to write")
    b.add_argument("pairs", nargs="+", help="weight prefix [weight prefix ...]")

    s = sub.add_parser("sample-corpus", help="build a real sample corpus from PyPI sdists (no other network)",
                       description="Download Django source distributions with pip and split their docs into "
                                   "sections, as a Parquet corpus with cross-version near-duplicates.")
    s.add_argument("--output", required=True, help="output Parquet file")
    s.add_argument("--versions", default="4.2.16,5.0.9,5.1.3", help="comma-separated Django versions")
    for command in sub.choices.values():  # --verbose is global, but may also follow the command
        command.add_argument("-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
                             help="show datatrove's logging, and the traceback of an error")
    return parser


# integer options that must be >= 1 (checked before any work, named as on the command line)
POSITIVE = ("tasks", "workers", "batch_size", "num_perm", "ngram", "bands", "rows", "unit_rows", "vocab_size",
            "min_frequency", "max_docs", "max_bytes", "warn_component_size")


def check_options(a: argparse.Namespace) -> None:
    """Raise :class:`ConfigError` naming the flag of an out-of-range option value."""
    for name in POSITIVE:
        value = getattr(a, name, None)
        if value is not None and value < 1:
            raise ConfigError(f"--{name.replace('_', '-')}", f"must be >= 1, got {value}")
    if getattr(a, "max_shard_bytes", 1 << 10) < 1 << 10:
        raise ConfigError("--max-shard-bytes", f"must be at least 1024, got {a.max_shard_bytes}")
    threshold = getattr(a, "threshold", None)
    if threshold is not None and not 0 < threshold < 1:
        raise ConfigError("--threshold", f"must be in (0, 1), got {threshold}")


def _read_options(a: argparse.Namespace) -> dict[str, Any]:
    return {"batch_size": a.batch_size, "text_column": a.text_column, "id_column": a.id_column}


def _exec_options(a: argparse.Namespace) -> dict[str, Any]:
    return {"tasks": a.tasks, "workers": a.workers, "executor": a.executor,
            "max_shard_bytes": a.max_shard_bytes, "progress": not a.no_progress}


def _cmd_filter(a: argparse.Namespace) -> dict[str, Any]:
    from dataproc.config import load_config
    from dataproc.filters import build_filters, check_filter_name
    from dataproc.pipeline import run_filter
    from dataproc.shards import resolve_inputs

    cfg = load_config(a.config, base={"input": a.input, "output": a.output})
    if a.filters is not None or not cfg.filters:
        names = a.filters.split(",") if a.filters else list(DEFAULT_FILTERS)
        for n in names:
            check_filter_name(n, key=f"--filters {n}")
        cfg.filters = {n: cfg.filters.get(n, {}) for n in names}
    return run_filter(resolve_inputs(a.input), a.output, build_filters(cfg.filters), **_exec_options(a),
                      **_read_options(a))


def _cmd_dedup(a: argparse.Namespace) -> dict[str, Any]:
    from dataproc.dedup.stages import ExactKeyer, MinHashKeyer
    from dataproc.pipeline import run_dedup
    from dataproc.shards import resolve_inputs

    if a.method == "exact":
        keyer = ExactKeyer()
    else:
        if a.threshold is not None and (a.bands or a.rows):
            raise ConfigError("--threshold", "give either --threshold or --bands/--rows, not both")
        bands, rows = (None, None) if a.threshold is not None else (a.bands or 18, a.rows or 7)
        if bands is not None and bands * rows > a.num_perm:
            raise ConfigError("--bands", f"bands x rows = {bands} x {rows} exceeds --num-perm {a.num_perm}")
        try:
            keyer = MinHashKeyer(num_perm=a.num_perm, ngram=a.ngram, seed=a.seed, bands=bands, rows=rows,
                                 threshold=a.threshold, verify=a.verify)
        except ValueError as exc:
            raise ConfigError("--num-perm/--bands/--rows/--threshold", str(exc)) from exc
    return run_dedup(resolve_inputs(a.input), a.output, keyer, **_exec_options(a), **_read_options(a),
                     warn_component_size=a.warn_component_size)


def _cmd_run(a: argparse.Namespace) -> dict[str, Any]:
    from dataproc.config import load_config
    from dataproc.pipeline import run_pipeline

    return run_pipeline(load_config(a.config, a.overrides), progress=not a.no_progress)


def _cmd_sample(a: argparse.Namespace) -> dict[str, Any]:
    from dataproc.sample_corpus import build_sample_corpus

    return build_sample_corpus(a.output, a.versions.split(","))


def _cmd_tokenize(a: argparse.Namespace) -> dict[str, Any]:
    from dataproc.shards import resolve_inputs
    from dataproc.tokenize_stage import run_tokenize
    from dataproc.tokenizer import TokenizerSpec

    return run_tokenize(resolve_inputs(a.input), a.output_prefix, TokenizerSpec(a.tokenizer, a.eod),
                        workers=a.workers, tasks=a.tasks, executor=a.executor, overwrite=a.overwrite,
                        progress=not a.no_progress, text_column=a.text_column,
                        source_column=a.source_column or None, batch_size=a.batch_size, on_bad_row=a.on_bad_row,
                        min_unit_rows=a.unit_rows)


def _cmd_train_tokenizer(a: argparse.Namespace) -> dict[str, Any]:
    from dataproc.train_tokenizer import train_tokenizer

    return train_tokenizer(a.input, a.output, a.vocab_size, a.min_frequency,
                           [t for t in a.special_tokens.split(",") if t], a.text_column, a.max_docs,
                           a.max_bytes, progress=not a.no_progress, chat_specials=a.chat_specials,
                           split_digits=a.split_digits)


def _cmd_blend(a: argparse.Namespace) -> dict[str, Any]:
    from dataproc.blend import parse_pairs, write_blend

    return write_blend(a.output, parse_pairs(a.pairs))


def _tokens(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e5 else str(n)


def _one_line(summary: dict[str, Any]) -> str:
    if summary.get("format") == "megatron-indexed-dataset":
        top = sorted(summary["tokens_by_source"].items(), key=lambda kv: -kv[1])
        src = "; by source: " + ", ".join(f"{k} {_tokens(v)}" for k, v in top[:8]) if top else ""
        return (f"tokenize: {summary['documents']} docs → {_tokens(summary['tokens'])} tokens ({summary['dtype']}, "
                f"vocab {summary['tokenizer']['vocab_size']}, eod {summary['tokenizer']['eod_id']}) in "
                f"{summary['prefix']}.bin/.idx, {summary['quarantined']} quarantined{src}")
    if summary.get("format") == BLEND_FORMAT:
        parts = [f"{os.path.basename(p)} w={w:.3f} ({_tokens(t)} tokens, {s:.1%} of tokens)" for p, w, t, s in
                 zip(summary["prefixes"], summary["weights"], summary["tokens"], summary["share_of_tokens"],
                     strict=True)]
        return f"blend: {summary['output']}: " + "; ".join(parts)
    if "tokenizer" in summary and "vocab_size" in summary:
        return (f"train-tokenizer: vocab {summary['vocab_size']} from {summary['docs']} docs in "
                f"{summary['time_s']:.1f}s → {summary['tokenizer']}")
    if "submitted" in summary:
        return f"submitted {len(summary['submitted'])} Slurm jobs writing to {summary['output']}: {summary['note']}"
    if "stages" in summary:
        parts = [f"{s['stage']}: {s['docs_in']}→{s['kept']}" for s in summary["stages"]]
        return (f"pipeline: {summary['docs_in']} docs in, {summary['kept']} kept, {summary['removed']} removed, "
                f"{summary['quarantined']} quarantined, balanced={summary['balanced']} ({'; '.join(parts)}) "
                f"in {summary['wall_s']:.1f}s")
    if "stage" in summary:
        return (f"{summary['stage']}: {summary['docs_in']} docs in, {summary['kept']} kept, "
                f"{summary['removed_total']} removed {json.dumps(summary['removed'])}, "
                f"{summary['quarantined_total']} quarantined, balanced={summary['balanced']}, "
                f"{summary.get('wall_s', summary['time_s']):.1f}s")
    return json.dumps(summary)


# Raised on bad input that no check turned into a DataError/ConfigError: one line, no traceback.
USER_ERRORS = (ValueError, KeyError, TypeError, OSError)


def _is_user_error(exc: BaseException) -> bool:
    # yaml's errors (a config with a syntax error) derive from Exception only
    return isinstance(exc, USER_ERRORS) or type(exc).__module__.split(".")[0] == "yaml"


def _error_line(exc: BaseException) -> str:
    if isinstance(exc, DataError | ConfigError):
        return str(exc)
    if isinstance(exc, KeyError):  # str(KeyError('x')) is "'x'"
        return f"KeyError: {exc.args[0] if exc.args else ''}"
    text = str(exc) or type(exc).__name__
    text = " ".join(text.split())  # one line (yaml's messages span several)
    return text if type(exc) is ValueError else f"{type(exc).__name__}: {text}"


def main(argv: list[str] | None = None) -> int:
    """Run one ``dataproc`` command; returns the exit status."""
    from dataproc import logs

    args = build_parser().parse_args(argv)
    logs.set_verbose(args.verbose)
    handler = {"filter": _cmd_filter, "dedup": _cmd_dedup, "run": _cmd_run, "sample-corpus": _cmd_sample,
               "tokenize": _cmd_tokenize, "train-tokenizer": _cmd_train_tokenizer, "blend": _cmd_blend}
    try:
        check_options(args)
        summary = handler[args.command](args)
    except Exception as exc:
        if not _is_user_error(exc):
            raise
        if args.verbose:
            traceback.print_exc()
        hint = "" if args.verbose or isinstance(exc, DataError | ConfigError) else " (--verbose: traceback)"
        print(f"dataproc {args.command}: error: {_error_line(exc)}{hint}", file=sys.stderr)
        return 2 if isinstance(exc, DataError | ConfigError) else 1
    for warning in summary.get("warnings", []):
        print(f"dataproc {args.command}: warning: {warning}", file=sys.stderr)
    print(_one_line(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
