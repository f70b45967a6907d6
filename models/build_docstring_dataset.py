"""Assemble the labeled text that the classic-ML text classifier trains on: ``models/data/stdlib_docstrings.csv``.

Why this source: no data set can be downloaded here, yet the classifier must learn from real text. Every
CPython ships thousands of hand-written docstrings, and the module a docstring belongs to is a natural,
honest label: a ``socket`` docstring talks about networking, a ``decimal`` one about numbers. The text is
the first paragraph of the docstring of each public function, class and method defined in the modules of
``FAMILIES``, labeled with the family of its module; texts that occur under two families are dropped.

The CSV is committed so that training does not depend on the interpreter's version; rerun
``python -m models.build_docstring_dataset`` to rebuild it (the output depends only on the Python version).
Columns: ``text,label,module`` (``module`` is provenance, not a feature).
"""

from __future__ import annotations

import csv
import importlib
import inspect
import re
import sys
from collections import Counter
from pathlib import Path

DATA_PATH = Path(__file__).resolve().parent / "data" / "stdlib_docstrings.csv"
MIN_CHARS, MAX_CHARS = 24, 300
FAMILIES: dict[str, list[str]] = {
    "text": ["string", "textwrap", "difflib", "re", "html", "html.parser", "gettext", "locale", "shlex",
             "codecs", "unicodedata", "tokenize", "stringprep"],
    "files": ["os", "posixpath", "shutil", "pathlib", "glob", "fnmatch", "tempfile", "filecmp", "fileinput",
              "stat", "io", "_pyio"],
    "network": ["socket", "ssl", "http.client", "http.server", "http.cookiejar", "http.cookies",
                "urllib.request", "urllib.parse", "smtplib", "ftplib", "imaplib", "poplib", "socketserver",
                "ipaddress", "xmlrpc.client", "selectors"],
    "concurrency": ["threading", "multiprocessing.pool", "multiprocessing.managers", "multiprocessing.queues",
                    "multiprocessing.synchronize", "multiprocessing.process", "asyncio.tasks", "asyncio.locks",
                    "asyncio.queues", "asyncio.events", "asyncio.streams", "asyncio.base_events",
                    "concurrent.futures._base", "concurrent.futures.thread", "queue", "sched", "subprocess"],
    "formats": ["tarfile", "zipfile", "gzip", "bz2", "lzma", "zlib", "json", "json.decoder", "json.encoder",
                "csv", "pickle", "configparser", "plistlib", "base64", "mailbox", "xml.dom.minidom",
                "xml.etree.ElementTree"],
    "numbers": ["math", "cmath", "_pydecimal", "fractions", "statistics", "random", "numbers", "operator"],
    "time": ["datetime", "_strptime", "calendar", "time", "zoneinfo"],
    "devtools": ["unittest.case", "unittest.mock", "unittest.loader", "unittest.runner", "doctest", "pdb",
                 "bdb", "traceback", "timeit", "profile", "pstats", "trace", "inspect", "dis", "warnings"],
}  # fmt: skip


def first_paragraph(doc: str | None) -> str | None:
    """The docstring's first paragraph on one line, or None when it is too short to say anything."""
    if not doc:
        return None
    paragraph = re.split(r"\n\s*\n", inspect.cleandoc(doc), maxsplit=1)[0]
    text = " ".join(paragraph.split())
    if len(text) < MIN_CHARS or text.startswith(("Return self", "Implement ", "Initialize self")):
        return None
    return text[:MAX_CHARS]


def documented(module_name: str) -> list[str]:
    """First paragraphs of the public functions, classes and methods the module defines itself."""
    module = importlib.import_module(module_name)
    own = {module.__name__, module_name, module_name.removeprefix("_py")}
    texts: list[str] = []
    for name, obj in sorted(vars(module).items()):
        if name.startswith("_") or getattr(obj, "__module__", None) not in own:
            continue
        if not (inspect.isclass(obj) or inspect.isroutine(obj)):
            continue
        texts.append(first_paragraph(obj.__doc__) or "")
        if inspect.isclass(obj):
            for attr, member in sorted(vars(obj).items()):
                if not attr.startswith("_") and inspect.isroutine(member):
                    texts.append(first_paragraph(member.__doc__) or "")
    return [t for t in texts if t]


def build() -> list[tuple[str, str, str]]:
    """(text, label, module) rows, sorted; a text found under two families is dropped."""
    rows: dict[str, tuple[str, str]] = {}
    ambiguous: set[str] = set()
    for label, modules in FAMILIES.items():
        for module_name in modules:
            for text in documented(module_name):
                if text in rows and rows[text][0] != label:
                    ambiguous.add(text)
                rows.setdefault(text, (label, module_name))
    return sorted((t, lab, mod) for t, (lab, mod) in rows.items() if t not in ambiguous)


def main() -> None:
    rows = build()
    DATA_PATH.parent.mkdir(parents=True, exist_ok=True)
    with DATA_PATH.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["text", "label", "module"])
        writer.writerows(rows)
    counts = Counter(label for _, label, _ in rows)
    print(f"wrote {len(rows)} rows from Python {sys.version.split()[0]} to {DATA_PATH}")
    for label, count in sorted(counts.items()):
        print(f"  {label:12s} {count}")


if __name__ == "__main__":
    main()
