"""How the shipped 4-grams (``tasks/data/ngrams.npz``) are built: from the English prose that
ships with Python, deterministically. The result depends on the Python version, hence
the shipped file; ``tinygrad-ee data rebuild-ngrams`` remakes it.
"""

from __future__ import annotations

import ast
import collections
import io
import re
import sys
import sysconfig
import tokenize
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from .embedded import ngram_file_arrays
from .layouts import NgramData

VOCAB_SIZE = 250
NGRAM_SEED = 0

# A word: a run of lower-case letters, with apostrophes inside ("don't", "object's").
WORD = re.compile(r"[a-z]+(?:'[a-z]+)*")
# A sentence ends at . ! or ? followed by white space or the end of the text; splitting
# there keeps 4-grams from running across sentences. ("e.g. " splits too: harmless.)
SENTENCE_END = re.compile(r"[.!?](?:\s+|$)")
# Lines that are not prose: interactive examples, reST directives, heading underlines.
NOT_PROSE_LINE = re.compile(r"^\s*(>>>|\.\.\.|\.\. |[-=*~^#+_`]{3,}\s*$)")
# Directories of the standard library that hold tests, demos, installed third-party
# packages, or (encodings) tables of character names rather than prose.
SKIPPED_STDLIB_DIRS = frozenset(
    {
        "test",
        "tests",
        "idle_test",
        "turtledemo",
        "lib2to3",
        "encodings",
        "site-packages",
        "dist-packages",
    }
)


def _prose_paragraphs(text: str) -> Iterator[str]:
    """Yield the paragraphs of a text that read as prose, each joined into one line.

    A paragraph (separated by blank lines) counts as prose when at least 80 % of its
    characters are letters or spaces and at most half of its letters are capitals; that
    drops grammar rules, code samples, tables and lists of constants.
    """
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    for paragraph in re.split(r"\n\s*\n", text):
        lines = [line.strip() for line in paragraph.splitlines() if not NOT_PROSE_LINE.match(line)]
        joined = " ".join(line for line in lines if line)
        if not joined or "::=" in joined:
            continue
        letters = sum(char.isalpha() for char in joined)
        spaces = joined.count(" ")
        capitals = sum(char.isupper() for char in joined)
        if letters + spaces >= 0.8 * len(joined) and capitals <= 0.5 * letters:
            yield joined


def _stdlib_files() -> list[Path]:
    """The standard library's .py files, sorted, without its tests and demos."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for path in root.rglob("*.py"):
        folders = path.relative_to(root).parts[:-1]
        if not SKIPPED_STDLIB_DIRS.intersection(folders):
            files.append(path)
    return sorted(files, key=lambda path: path.relative_to(root).as_posix())


def _docstrings_and_comments(path: Path) -> list[str]:
    """Docstrings (module, class, function) and comment blocks of one source file."""
    try:
        with tokenize.open(path) as handle:
            source = handle.read()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. SyntaxWarning for odd escapes
            tree = ast.parse(source)
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (SyntaxError, UnicodeDecodeError, ValueError, tokenize.TokenError):
        return []
    texts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            docstring = ast.get_docstring(node)
            if docstring:
                texts.append(docstring)
    # Comments on consecutive lines form one block; an empty "#" line is a paragraph break.
    block: list[str] = []
    last_line = None
    for token in tokens:
        if token.type != tokenize.COMMENT:
            continue
        line = token.start[0]
        if block and last_line is not None and line != last_line + 1:
            texts.append("\n".join(block))
            block = []
        block.append(token.string.lstrip("#").strip())
        last_line = line
    if block:
        texts.append("\n".join(block))
    return texts


def python_prose() -> list[str]:
    """The English prose that ships with this Python, as a deterministic list of texts.

    The ``pydoc_data`` topics (the language reference's help texts, sorted by topic) then,
    file by sorted file, the standard library's docstrings and comment blocks.
    """
    from pydoc_data.topics import topics

    texts = [topics[name] for name in sorted(topics)]
    for path in _stdlib_files():
        texts.extend(_docstrings_and_comments(path))
    return texts


def tokenised_sentences(texts: list[str]) -> list[list[str]]:
    """Prose paragraphs -> sentences -> lower-case words (see ``WORD``)."""
    sentences = []
    for text in texts:
        for paragraph in _prose_paragraphs(text):
            for sentence in SENTENCE_END.split(paragraph.lower()):
                words = WORD.findall(sentence)
                if len(words) >= 4:
                    sentences.append(words)
    return sentences


def build_ngrams_from_python_docs(
    vocab_size: int = VOCAB_SIZE, seed: int = NGRAM_SEED, texts: list[str] | None = None
) -> NgramData:
    """Build the default 4-gram data set from Python's own prose (see :func:`python_prose`).

    Tokens are lower-case runs of letters with inner apostrophes, taken from prose
    paragraphs split into sentences. The vocabulary is the ``vocab_size`` most frequent
    tokens (ties broken alphabetically), listed most frequent first. Every run of four
    consecutive tokens inside one sentence whose four tokens are all in the vocabulary is a
    4-gram; repeats are kept, so the data carries how often phrases occur (as in the
    original corpus). A seeded permutation splits them 80/10/10 into train/val/test.
    Takes a few seconds; the result depends on the Python version, hence the shipped file.
    """
    sentences = tokenised_sentences(python_prose() if texts is None else texts)
    counts = collections.Counter(word for sentence in sentences for word in sentence)
    ranked = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    words = [word for word, _ in ranked[:vocab_size]]
    index = {word: i for i, word in enumerate(words)}
    grams = []
    for sentence in sentences:
        ids = [index.get(word, -1) for word in sentence]
        for start in range(len(ids) - 3):
            gram = ids[start : start + 4]
            if min(gram) >= 0:
                grams.append(gram)
    grams_array = np.array(grams, dtype=np.int64).reshape(-1, 4)
    order = np.random.default_rng(seed).permutation(len(grams_array))
    grams_array = grams_array[order]
    n_train, n_val = int(0.8 * len(grams_array)), int(0.1 * len(grams_array))
    bounds = {"train": (0, n_train), "val": (n_train, n_train + n_val)}
    bounds["test"] = (n_train + n_val, len(grams_array))
    fields = {}
    for split, (begin, end) in bounds.items():
        fields[f"{split}_context"] = grams_array[begin:end, :3]
        fields[f"{split}_target"] = grams_array[begin:end, 3]
    return NgramData(words=words, **fields)


def shipped_arrays() -> dict[str, np.ndarray]:
    """The arrays of the shipped file (``tasks/data/ngrams.npz``), rebuilt from this Python's
    prose: the data2.h5 layout (int16), and the version of Python that built them."""
    arrays = ngram_file_arrays(build_ngrams_from_python_docs())
    version = ".".join(map(str, sys.version_info[:3]))
    arrays["built_with_python"] = np.array(version.encode(), dtype=np.bytes_)
    return arrays
