"""Short flags: one flag name has one short form in every task, and a letter of the table means
one flag (it was `-l` for --allow-busy on run and --tolerance on train-hlb)."""

from __future__ import annotations

import dataclasses
from collections import defaultdict

from invoke import Collection

from remote_run.chain import Flags, RunTask
from remote_run.options import NOT_SHORT, SHORT_FLAGS, RunOptions, short_flag
from remote_run.tasks import ns


def every_task(collection: Collection, prefix: str = ""):
    for name, each in collection.tasks.items():
        yield prefix + name, each
    for name, sub in collection.collections.items():
        yield from every_task(sub, f"{prefix}{name}.")


def flags_of(each) -> dict:
    """{flag name (underscored): its short form or None} as invoke parses the task."""
    return {arg.attr_name or arg.name: next((n for n in arg.names if len(n) == 1), None)
            for arg in each.get_arguments()}


def test_one_flag_name_has_one_short_form_in_every_task():
    forms = defaultdict(dict)
    for name, each in every_task(ns):
        assert isinstance(each, Flags), f"{name} is not made by remote_run.chain.task"
        for flag, short in flags_of(each).items():
            forms[flag][name] = short
    mixed = {flag: by_task for flag, by_task in forms.items() if len(set(by_task.values())) > 1}
    assert not mixed, mixed
    assert forms["allow_busy"]["run"] == forms["allow_busy"]["train-hlb"] == forms["allow_busy"]["gpu-check"] == "a"


def test_a_letter_of_the_table_means_its_flag_and_nothing_else():
    letters = [letter for letter in SHORT_FLAGS.values() if letter]
    assert len(letters) == len(set(letters)) and NOT_SHORT not in letters
    for name, each in every_task(ns):
        if not each.auto_shortflags:
            continue
        for flag, short in flags_of(each).items():
            if flag in SHORT_FLAGS:
                assert short == (SHORT_FLAGS[flag] or None), (name, flag)
            elif len(flag) > 1:  # compare's positional `a` and `b` are their own one-letter names
                assert short not in letters and short != NOT_SHORT, (name, flag, short)


def test_the_run_tasks_give_each_shared_flag_the_same_short_form():
    run_tasks = {name: each for name, each in every_task(ns) if isinstance(each, RunTask)}
    assert set(run_tasks) == {"train-hlb", "train-david", "run", "rerun"}
    for field in RunOptions.flags():
        seen = {flags_of(each).get(field.name, "absent") for each in run_tasks.values()} - {"absent"}
        assert seen == {SHORT_FLAGS.get(field.name) or None}, field.name


def test_a_new_shared_flag_is_long_only_until_the_table_gives_it_a_letter():
    shared = {f.name for f in dataclasses.fields(RunOptions)}
    for name in shared - set(SHORT_FLAGS):
        assert short_flag(name, set()) is None, name
    # a task's own flag takes the first letter of its name that the table and its earlier flags leave free
    assert short_flag("lux", set()) == "l" and short_flag("lux", {"l"}) == "u"
    assert short_flag("docker", set()) is None  # d, o, c, k, e, r: all the table's
