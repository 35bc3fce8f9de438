"""What a probe learnt from a source is kept between runs: an unchanged file is not imported twice,
and anything that could change what it registers (the file, a helper beside it, an installed
package, normbench itself) makes the next run import it again; failures are never kept."""

import json
import textwrap

import pytest

import bench.workers
from bench.registry import ProbeMemo, sources
from bench.workers import WorkerClient, discover

FILE = textwrap.dedent('''
    """A user's NumPy normalization."""
    import numpy as np

    from bench.registry import register


    @register(framework="numpy", layout="NCHW", std="population", eps_at="sqrt", modes=("forward",))
    def {name}(case):
        mean = lambda x: x.mean(axis=(2, 3), keepdims=True)
        return lambda x: (x - mean(x)) / np.sqrt(mean((x - mean(x)) ** 2) + 1e-5)
''')


@pytest.fixture
def probes(monkeypatch, tmp_path):
    """The probe workers started (their sources), in a memo of this test's own."""
    monkeypatch.setenv("NORMBENCH_CACHE_DIR", str(tmp_path / "cache"))
    started = []

    class Counting(WorkerClient):
        def __init__(self, spec, *args, **kwargs):
            started.append([s.stem for s in spec.sources])
            super().__init__(spec, *args, **kwargs)

    monkeypatch.setattr(bench.workers, "WorkerClient", Counting)
    return started


def source_of(folder):
    (source,) = [s for s in sources([str(folder)], plugins=False) if s.stem == "mine"]
    return source


def found(folder, reuse=True):
    disc = discover(sources([str(folder)], plugins=False), 1, only={"mine"}, reuse=reuse)
    return disc.impls["mine"]


def test_an_unchanged_file_is_imported_once_and_any_change_imports_it_again(tmp_path, probes):
    folder = tmp_path / "impls"
    folder.mkdir()
    (folder / "mine.py").write_text(FILE.format(name="mine"))
    first = found(folder)
    assert first.unavailable is None and first.description == "A user's NumPy normalization."
    assert found(folder) == first and probes == [["mine"]]  # the second run imported nothing

    (folder / "_helpers.py").write_text("SCALE = 1\n")  # a helper beside it may change what it declares
    assert found(folder) == first and len(probes) == 2
    (folder / "mine.py").write_text(FILE.format(name="mine").replace('"forward",', '"forward", "train"'))
    assert found(folder).modes == ("forward", "train") and len(probes) == 3
    assert found(folder, reuse=False).modes == ("forward", "train") and len(probes) == 4  # --reprobe


def test_a_package_installed_or_removed_imports_it_again(tmp_path, probes, monkeypatch):
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(site))  # a folder the workers import from
    folder = tmp_path / "impls"
    folder.mkdir()
    (folder / "mine.py").write_text(FILE.format(name="mine"))
    found(folder)
    found(folder)
    assert len(probes) == 1
    (site / "newpkg").mkdir()  # what pip does to site-packages
    found(folder)
    assert len(probes) == 2
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))  # another import path for the workers
    found(folder)
    assert len(probes) == 3


def test_what_only_this_process_imports_from_does_not_matter(tmp_path, probes, monkeypatch):
    """pytest puts its rootdir in front of sys.path and `python -m bench` the working folder; the
    workers import with neither: the CLI, the pytest front end and an in-process check share."""
    folder = tmp_path / "impls"
    folder.mkdir()
    (folder / "mine.py").write_text(FILE.format(name="mine"))
    found(folder)
    other = tmp_path / "elsewhere"
    other.mkdir()
    monkeypatch.syspath_prepend(str(other))
    monkeypatch.syspath_prepend("")
    found(folder)
    assert len(probes) == 1


def test_a_failure_is_never_kept(tmp_path, probes):
    folder = tmp_path / "impls"
    folder.mkdir()
    (folder / "mine.py").write_text("import no_such_module_anywhere\n" + FILE.format(name="mine"))
    for _ in range(2):
        assert "ModuleNotFoundError" in found(folder).unavailable
    assert len(probes) == 2
    # declares `mine` (what the file says statically) but registers another name on import
    text = FILE.format(name="mine").replace('std="population"', 'std="population", name=NAME')
    (folder / "mine.py").write_text('NAME = "other"\n' + text)
    for _ in range(2):
        assert "registered no implementation of that name" in found(folder).unavailable
    assert len(probes) == 4


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        '{"KEY": "a string"}',
        '{"KEY": {"impls": "x", "at": "2026-01-01T00:00:00+00:00"}}',
        '{"KEY": {"impls": [{"name": 1}], "at": "NOW"}}',
        '{"KEY": {"impls": [], "at": "NOW"}}',
        '{"KEY": {"impls": [{"name": "mine"}], "at": "yesterday"}}',
        "RENAMED",  # a whole entry, edited to hold a name the file does not declare
    ],
)
def test_a_memo_someone_broke_means_import_again(tmp_path, probes, text):
    folder = tmp_path / "impls"
    folder.mkdir()
    (folder / "mine.py").write_text(FILE.format(name="mine"))
    good = found(folder)
    memo_file = tmp_path / "cache" / "probes.json"
    (key,) = json.loads(memo_file.read_text())
    now = json.loads(memo_file.read_text())[key]["at"]
    if text == "RENAMED":
        entries = json.loads(memo_file.read_text())
        entries[key]["impls"][0]["name"] = "someone_else"
        text = json.dumps(entries)
    memo_file.write_text(text.replace("KEY", key).replace("NOW", now))
    assert found(folder) == good and len(probes) == 2
    assert ProbeMemo().load(key, source_of(folder), "numpy") == [good]  # and the next run finds it kept again


def test_an_old_entry_is_dropped_and_an_unwritable_memo_is_no_error(tmp_path, probes):
    folder = tmp_path / "impls"
    folder.mkdir()
    (folder / "mine.py").write_text(FILE.format(name="mine"))
    found(folder)
    memo = ProbeMemo(max_age_s=0)
    (key,) = memo.entries
    assert memo.load(key, source_of(folder), "numpy") is None
    memo.save({})
    (tmp_path / "cache" / "probes.json").unlink()
    (tmp_path / "cache" / "probe-key").unlink()
    (tmp_path / "cache").rmdir()
    (tmp_path / "cache").write_text("a file where the folder should be")
    assert found(folder).unavailable is None and found(folder).unavailable is None
    assert len(probes) == 3


def test_an_entry_edited_by_hand_is_not_believed(tmp_path, probes):
    """A memo entry that names other layouts, semantics and roles, or a phantom implementation,
    fails its MAC: the source is imported again, and what it really registers is what counts."""
    folder = tmp_path / "impls"
    folder.mkdir()
    (folder / "mine.py").write_text(FILE.format(name="mine"))
    honest = found(folder)
    memo_file = tmp_path / "cache" / "probes.json"
    doc = json.loads(memo_file.read_text())
    entries = doc.get("entries", doc)
    (entry,) = [e for e in entries.values() if isinstance(e, dict) and "impls" in e]
    forged = dict(
        entry["impls"][0], layouts=["NCHW", "NHWC"], semantics="unbiased/eps@std", roles=["baseline"]
    )
    entry["impls"] = [forged, dict(forged, name="phantom")]
    memo_file.write_text(json.dumps(doc))
    again = found(folder)
    assert len(probes) == 2 and again == honest
    assert "phantom" not in discover(sources([str(folder)], plugins=False), 1, only={"mine"}).impls


def test_a_helper_edited_in_place_in_a_folder_on_the_import_path_imports_it_again(
    tmp_path, probes, monkeypatch
):
    folder = tmp_path / "impls"
    folder.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(folder))  # the implementation's folder is itself on the path
    (folder / "helper_eps.py").write_text("EPS = 1e-5\n")
    (folder / "mine.py").write_text(FILE.format(name="mine"))
    found(folder)
    found(folder)
    assert len(probes) == 1
    (folder / "helper_eps.py").write_text("EPS = 1e-3\n")  # in place: the folder's mtime need not move
    found(folder)
    assert len(probes) == 2
