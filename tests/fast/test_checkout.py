"""Which checkout a REMOTE_DIR mirrors: the host program's one check of it (host.owner, used by the
sync's claim, the fast path's check and clean) and this machine's id (remote_run.checkout),
imported and tested directly."""

from __future__ import annotations

import json
import os
import stat

import pytest

from remote_run import checkout, settings
from remote_run.errors import Failure
from remote_run.host import checks, clean, layout, owner, tree
from remote_run.host.exits import REFUSED
from remote_run.options import RunOptions
from remote_run.preflight import Preflight

ANN = {"id": "a" * 32, "from": "laptop:/home/ann/proj", "host": "l1", "take_over": False}
BOB = {"id": "b" * 32, "from": "desk:/home/ann/proj", "host": "l1", "take_over": False}


@pytest.fixture
def root(tmp_path):
    """A REMOTE_DIR that Ann's checkout synced (claimed, recorded, stamped), with one run."""
    base = tmp_path / "base"
    base.mkdir(mode=0o755)
    found = base / "remote"
    assert owner.claim(str(found), "stamp-1", False, ["true"], ANN) == 0
    (found / "train.py").write_text("print(1)\n")
    (found / layout.RUNS / "r1").mkdir(parents=True)
    (found / layout.RUNS / "r1" / "meta.json").write_text("{}")
    (found / layout.RUNS / "r1" / "exit_code").write_text("0\n")
    return found


def files(folder) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_first_sync_records_the_checkout_and_where_it_came_from(root):
    record = owner.checkout_of(str(root))
    assert record["id"] == ANN["id"] and record["from"] == "laptop:/home/ann/proj"
    assert set(record) == {"id", "from", "synced"}  # never the host label, never anything else of this machine
    assert owner.shown(dict(record, synced=0)) == "laptop:/home/ann/proj, synced 1970-01-01 00:00 UTC"


@pytest.mark.parametrize("mine, refused", [
    (None, False),  # by hand: no checkout given, no check
    (ANN, False),
    (dict(ANN, **{"from": "laptop:/home/ann/moved"}), False),  # the same checkout, moved: still it
    (BOB, True),
    (dict(BOB, **{"from": ANN["from"]}), False),  # cloned again where ANN's stood: it replaces it
    (dict(BOB, take_over=True), False),
], ids=["by-hand", "same", "moved", "other", "same-place", "take-over"])
def test_only_another_checkout_is_refused_unless_it_takes_over(root, mine, refused):
    line = owner.other_checkout(str(root), mine)
    assert bool(line) == refused
    if refused:
        assert line.startswith(f"REMOTE_DIR={root} on l1 mirrors another checkout (laptop:/home/ann/proj, synced ")
        assert line.endswith("; set REMOTE_DIR to another path for this one, or take it over with --take-over")


def test_a_checkout_cloned_again_in_the_same_place_takes_over_and_says_so_once(root, capsys):
    again = dict(BOB, **{"from": ANN["from"]})
    assert owner.claim(str(root), "stamp-2", False, ["true"], again) == 0
    assert owner.checkout_of(str(root))["id"] == again["id"]
    err = capsys.readouterr().err
    assert err == (f"remote-run: REMOTE_DIR={root} mirrored an earlier checkout in this same place "
                   f"(laptop:/home/ann/proj, synced {err.split(', synced ')[1].split(')')[0]}); "
                   "it mirrors this one now, with that one's runs\n")
    assert (root / layout.RUNS / "r1" / "meta.json").is_file()
    assert owner.claim(str(root), "stamp-3", False, ["true"], again) == 0
    assert capsys.readouterr().err == ""
    assert owner.other_checkout(str(root), dict(BOB, id="c" * 32))  # another place is still another checkout


def test_a_sync_from_another_checkout_is_refused_and_changes_nothing(root, tmp_path, capsys):
    before = files(root)
    assert owner.claim(str(root), "stamp-2", False, ["touch", str(tmp_path / "ran")], BOB) == REFUSED
    assert "mirrors another checkout (laptop:/home/ann/proj" in capsys.readouterr().err
    assert not (tmp_path / "ran").exists() and files(root) == before
    assert owner.claim(str(root), "", True, ["touch", str(tmp_path / "ran")], BOB) == REFUSED  # sync --dry-run
    assert "a sync would refuse it: REMOTE_DIR=" in capsys.readouterr().err
    assert not (tmp_path / "ran").exists() and files(root) == before


def test_taking_over_rewrites_the_record_and_keeps_the_runs(root):
    assert owner.claim(str(root), "stamp-2", False, ["true"], dict(BOB, take_over=True)) == 0
    assert owner.checkout_of(str(root))["from"] == "desk:/home/ann/proj"
    assert (root / layout.RUNS / "r1" / "meta.json").is_file()
    assert owner.other_checkout(str(root), ANN)  # now Ann's is the other one
    assert not owner.other_checkout(str(root), BOB)


def test_a_moved_checkout_is_recorded_where_it_is_now(root):
    assert owner.claim(str(root), "stamp-2", False, ["true"], dict(ANN, **{"from": "laptop:/srv/proj"})) == 0
    assert owner.checkout_of(str(root))["from"] == "laptop:/srv/proj"


def test_a_remote_dir_from_before_checkouts_were_recorded_is_adopted_by_the_first_sync(root):
    (root / owner.CHECKOUT).unlink()
    assert owner.checkout_of(str(root)) is None and not owner.other_checkout(str(root), BOB)
    assert owner.claim(str(root), "stamp-2", False, ["true"], BOB) == 0
    assert owner.checkout_of(str(root))["id"] == BOB["id"]


@pytest.mark.parametrize("text", ["not json", "[]", '{"from": "x:/y"}'])
def test_a_record_that_cannot_be_read_counts_as_none(root, text):
    (root / owner.CHECKOUT).write_text(text)
    assert owner.checkout_of(str(root)) is None


def spec_for(root, mine, delta=None) -> dict:
    expect = tree.host_fingerprint(str(root), tree.compile_rules([]), {})
    return {"rules": [], "expect": expect, "protected": {}, "checkout": mine, **({"delta": delta} if delta else {})}


def test_the_fast_path_refuses_another_checkout_before_it_looks_or_writes(root):
    (root / tree.STAMP).write_text(spec_for(root, ANN)["expect"] + "\n")
    before = files(root)
    delta = {"base": "x", "target": "y", "files": [["train.py", "cHJpbnQoMik=", 420, 0]], "links": [], "dirs": [],
             "delete": []}
    report = checks.check_sync(str(root), spec_for(root, BOB, delta))
    assert report["state"] == "refused" and "mirrors another checkout (laptop:/home/ann/proj" in report["detail"]
    assert files(root) == before  # the stamp, the record, the files: as they were
    assert not checks.run_checks(str(root), {"sync": spec_for(root, BOB)})[0]["ok"]


def test_the_fast_path_confirms_this_checkout_and_records_where_it_is(root):
    (root / tree.STAMP).write_text(spec_for(root, ANN)["expect"] + "\n")
    moved = dict(ANN, **{"from": "laptop:/srv/proj"})
    assert checks.check_sync(str(root), spec_for(root, moved)) == {"state": "ok"}
    assert owner.checkout_of(str(root))["from"] == "laptop:/srv/proj"
    assert checks.check_sync(str(root), spec_for(root, dict(BOB, take_over=True))) == {"state": "ok"}
    assert owner.checkout_of(str(root))["id"] == BOB["id"]


def test_clean_refuses_another_checkouts_remote_dir_unless_it_takes_over(root, capsys):
    assert owner.whose(str(root)) == {"exists": True, "checkout": owner.checkout_of(str(root)), "runs": 1}
    assert clean.clean(str(root), False, BOB) == REFUSED
    line = capsys.readouterr().err
    assert "mirrors another checkout (laptop:/home/ann/proj" in line and "holds 1 of its runs" in line, line
    assert (root / layout.RUNS / "r1").is_dir()
    assert clean.clean(str(root), False, dict(BOB, take_over=True)) == 0
    assert not root.exists()
    assert owner.whose(str(root)) == {"exists": False, "checkout": None, "runs": 0}


def test_clean_keeping_data_leaves_no_record_behind(root):
    (root / layout.DATA).mkdir()
    (root / "data").mkdir()  # the workspace's own data/: not the cache
    assert clean.clean(str(root), False, ANN) == 0
    assert (root / layout.DATA).is_dir() and owner.checkout_of(str(root)) is None
    assert not (root / "data").exists() and not (root / layout.RUNS).exists()


# --- this machine's side: the checkout's id ------------------------------------------------------

@pytest.fixture
def loaded(tmp_path, monkeypatch):
    ws = tmp_path / "proj"
    ws.mkdir()
    return settings.load(environ={"WORKSPACE": str(ws), "REMOTE_HOST": "l1"})


def test_the_id_is_made_on_first_need_private_and_kept(loaded):
    assert checkout.own_id(loaded, create=False) is None
    made = checkout.own_id(loaded)
    where = loaded.runs_dir / ".checkout"
    assert stat.S_IMODE(where.stat().st_mode) == 0o600 and where.read_text().strip() == made
    assert checkout.own_id(loaded) == made and len(made) == 32
    spec = checkout.spec(loaded, take_over=True)
    assert spec == {"id": made, "from": f"{os.uname().nodename}:{loaded.workspace}", "host": "l1", "take_over": True}


def test_a_damaged_id_is_one_line_with_the_fix(loaded):
    loaded.runs_dir.mkdir(parents=True)
    (loaded.runs_dir / ".checkout").write_text("not an id\n")
    with pytest.raises(Failure) as info:
        checkout.own_id(loaded)
    assert ".checkout does not hold a checkout id" in info.value.problem and "delete it" in info.value.fix


def test_whose_runs_are_said_in_words(loaded):
    mine = {"id": checkout.own_id(loaded), "from": "x:/y", "synced": 0}
    theirs = {"id": "c" * 32, "from": "laptop:/home/ann/proj", "synced": 0}
    remote = loaded.remote_dir
    assert checkout.whose_runs(loaded, "l1", mine) == f"runs of this checkout (REMOTE_DIR={remote} on l1)"
    assert checkout.whose_runs(loaded, "l1", theirs) == (
        f"REMOTE_DIR={remote} on l1 mirrors another checkout (laptop:/home/ann/proj, synced 1970-01-01 00:00 UTC): "
        "these are its runs")
    assert "does not say which checkout it mirrors" in checkout.whose_runs(loaded, "l1", None)
    replaced = {"id": "d" * 32, "from": checkout.origin(loaded), "synced": 0}  # cloned again in this place
    assert checkout.whose_runs(loaded, "l1", replaced).startswith("runs of this checkout")
    assert checkout.runs_of(loaded, mine, 1) == "the 1 run of this checkout"
    assert checkout.runs_of(loaded, theirs, 19).startswith("19 runs of another checkout (laptop:/home/ann/proj")


def test_take_over_travels_from_a_run_tasks_flags_to_the_sync_plan(loaded):
    checked = RunOptions(take_over=True).check(loaded)
    assert Preflight(sync=True).for_run(checked).take_over
    assert "take_over" not in checked.invocation(["take_over", "cpu_ok"])  # a rerun does not take over again
    with pytest.raises(Failure, match="--take-over"):
        RunOptions(take_over=True, sky="gpu").check(loaded)


def test_the_check_the_host_gets_carries_this_checkout(loaded):
    from remote_run import steps

    plan = steps.sync_plan(Preflight(sync=True, take_over=True), loaded)
    assert plan.check()["checkout"] == checkout.spec(loaded, take_over=True)
    assert json.loads(json.dumps(plan.check()))["checkout"]["take_over"] is True


# --- the early check: the host walks before this machine's verdict comes on stdin -----------------

def early_for(spec) -> dict:
    return {key: spec[key] for key in ("rules", "expect", "protected", "checkout")}


def test_an_early_check_walks_once_and_takes_this_machines_verdict_from_the_next_line(root, monkeypatch):
    spec = spec_for(root, ANN)
    (root / tree.STAMP).write_text(spec["expect"] + "\n")
    walks = []
    walk = tree.host_entries
    monkeypatch.setattr(tree, "host_entries", lambda *args: walks.append(args[1]) or walk(*args))
    report, payload = checks.run_checks(str(root), {"early": early_for(spec)},
                                        rest=lambda: {"sync": spec, "rules": [["-", "x"]]})
    assert report == {"sync": {"state": "ok"}, "ok": True} and payload["rules"] == [["-", "x"]]
    assert len(walks) == 1  # the early walk was the check's
    (root / "train.py").write_text("print(2)  # edited on the host\n")
    report, _ = checks.run_checks(str(root), {"early": early_for(spec)}, rest=lambda: {"sync": spec})
    assert report["sync"]["state"] == "stale" and not report["ok"]
    (root / tree.STAMP).unlink()  # a delta cut short leaves no stamp
    for early in ({"early": early_for(spec)}, {}):
        report, _ = checks.run_checks(str(root), dict(early, sync=spec), rest=lambda: {"sync": spec})
        assert report["sync"] == {"state": "stale", "detail": "REMOTE_DIR differs from the last sync"}


def test_an_early_check_walks_again_under_the_rules_this_machine_sends(root):
    """What git ignores can change between two runs with the workspace's files the same: the host's
    own file at a path the new rules leave out makes REMOTE_DIR differ under the old rules only."""
    spec = spec_for(root, ANN)
    (root / tree.STAMP).write_text(spec["expect"] + "\n")
    (root / "notes.log").write_text("the host's own\n")
    new = dict(spec, rules=[["-", "/notes.log"]])
    report, _ = checks.run_checks(str(root), {"early": early_for(spec)}, rest=lambda: {"sync": new})
    assert report["sync"] == {"state": "ok"}
    report, _ = checks.run_checks(str(root), {"early": early_for(spec)}, rest=lambda: {"sync": spec})
    assert report["sync"]["state"] == "stale"


@pytest.mark.parametrize("said", ['{"full": true}\n', "", "not json\n"], ids=["full", "end-of-input", "garbled"])
def test_an_early_check_this_machine_calls_off_looks_at_nothing_more_and_writes_nothing(root, monkeypatch, said):
    import io

    spec = spec_for(root, BOB)  # another checkout's REMOTE_DIR: not even looked into
    (root / tree.STAMP).write_text(spec["expect"] + "\n")
    before = files(root)
    monkeypatch.setattr(checks.sys, "stdin", io.StringIO(said))
    report, _ = checks.run_checks(str(root), {"early": early_for(spec), "env": {"kind": "venv", "stamp": "s"}})
    assert report == {"ok": False, "full": True}
    assert files(root) == before and checks.walk_first(str(root), early_for(spec)) is None


def test_an_early_plan_starts_once_the_command_reads_its_stdin_and_only_once():
    """The plan's thread starts when the command has started (invoke's stdin thread reads first),
    so it does not hold the interpreter while the command is being started."""
    from remote_run import steps, transport

    calls = []
    later = steps.Later(lambda: calls.append("planned") or "the plan")
    stdin = transport.Deferred("line 1\n", lambda: f"verdict on {later.result()}\n", later.start)
    assert not later.started.is_set() and calls == []
    for _ in range(2):  # a command sent again (the host had not kept its program) reads it all again
        stream = stdin.stream()
        assert [stream.read(), stream.read(), stream.read()] == ["line 1\n", "verdict on the plan\n", ""]
    assert later.started.is_set() and calls == ["planned"]
