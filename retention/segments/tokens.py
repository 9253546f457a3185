"""Words of a text for the segment keywords, in any script.

Latin, Cyrillic, Greek, ... text splits at spaces and punctuation: words of two or more letters,
no numbers (the keywords' rule since the start). Chinese and Japanese are written without spaces,
so a product name such as "不锈钢煎锅" would otherwise be one "word" and every keyword a whole
product name. Here:

* **Chinese** (Han characters without kana) is cut into words by ``jieba`` (MIT; its dictionary is
  inside the package, nothing is downloaded): "不锈钢煎锅" → "不锈钢", "煎锅";
* **Japanese** (any kana in the run) is cut into overlapping pairs of characters (character
  bigrams), the usual fallback when no Japanese dictionary is at hand;
* Korean is written with spaces and splits like Latin text.

Words of one character are left out in every script (in Chinese they are mostly particles such as
的, 和, 与); so are numbers.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

#: Words of two or more letters, no numbers (the keywords' rule for text with spaces; a run of
#: Chinese or Japanese letters matches whole and is cut further below).
TOKEN_PATTERN = r"(?u)\b[^\W\d_]{2,}\b"
_WORDS = re.compile(TOKEN_PATTERN)
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff\u31f0-\u31ff\uff66-\uff9f]")
_CJK_RUN = re.compile(
    r"[\u3040-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\uff66-\uff9f]+"
)

_jieba: Any = None
_jieba_lock = threading.Lock()


def _chinese() -> Any:
    """jieba's tokenizer, loaded once (its dictionary takes about a second the first time)."""
    global _jieba
    with _jieba_lock:
        if _jieba is None:
            import jieba

            jieba.setLogLevel(logging.WARNING)
            tokenizer = jieba.Tokenizer()
            tokenizer.initialize()
            _jieba = tokenizer
        return _jieba


def _cjk_words(run: str) -> list[str]:
    """The words of a run of Chinese or Japanese characters."""
    if _KANA.search(run):  # Japanese: character bigrams
        return [run[i : i + 2] for i in range(len(run) - 1)] if len(run) > 1 else []
    return [w for w in _chinese().lcut(run, HMM=True) if len(w) > 1]


def words(text: str) -> list[str]:
    """The words of ``text`` in reading order: two letters or more, no numbers; Chinese cut by
    jieba, Japanese into character bigrams. Text without Chinese or Japanese gives exactly what
    :data:`TOKEN_PATTERN` finds. (Lower-casing is the caller's.)"""
    if not _CJK_RUN.search(text):  # most texts: the pattern alone
        return _WORDS.findall(text)
    out: list[str] = []
    for token in _WORDS.findall(text):
        if not _HAN.search(token) and not _KANA.search(token):
            if len(token) > 1:
                out.append(token)
            continue
        pos = 0
        for run in _CJK_RUN.finditer(token):  # letters around a CJK run are words of their own
            before = token[pos : run.start()]
            if len(before) > 1:
                out.append(before)
            out.extend(_cjk_words(run.group()))
            pos = run.end()
        if len(token) - pos > 1:
            out.append(token[pos:])
    return out
