"""Tasks that look at recorded runs: compare (and gate), report, and the baseline collection."""

from invoke import Collection

from ..chain import task
from ..errors import Failure, Kind
from ..options import GATE_HELP
from ..output import say, show, table
from ..session import session


def gate(runs_dir, a, b, *, tolerance=(), higher_is_better=(), lower_is_better=(), fail=False) -> None:
    """Compare ``a`` with ``b`` (Sides), show it, and with ``fail`` exit non-zero on a regression."""
    from .. import compare as comparing

    rows = comparing.compare(a, b, higher=comparing.check_metric_names("--higher-is-better", higher_is_better),
                             lower=comparing.check_metric_names("--lower-is-better", lower_is_better),
                             tolerances=comparing.parse_tolerances(tolerance))
    regressions = comparing.report(a, b, rows)
    for line in regressions:
        say(line)
    verdict(regressions, b.ref, a.ref, fail=fail)


def verdict(regressions: list, new: str, reference: str, *, fail: bool) -> None:
    """With ``fail`` (--fail-on-regression, --compare-to): exit 4 on ``regressions``, else say there are none."""
    if fail and regressions:
        raise Failure(f"{len(regressions)} metric{'s' if len(regressions) > 1 else ''} of {new} "
                      f"regressed against {reference}", kind=Kind.REGRESSION)
    if fail:
        say(f"no regression of {new} against {reference}")


def ab_gate(runs_dir, ab_id: str, gating: dict, *, fail: bool) -> None:
    """Show an A/B's paired comparison again (with the gate's flags given now, else its own) and
    with ``fail`` exit non-zero on its regressions."""
    from .. import against

    result = against.again(runs_dir, ab_id, gating)
    regressions = against.show(result)
    for line in regressions:
        say(line)
    verdict(regressions, "the working tree", f"{result['ref']} (A/B {ab_id})", fail=fail)


@task(name="compare", positional=["a", "b"], iterable=["tolerance", "higher_is_better", "lower_is_better"], help={
    "a": "the reference: a run id, a group id, a unique prefix of one, `latest`, or a baseline name "
         "(an A/B's sides, ID-A and ID-B, are compared pair by pair)",
    "b": "what to compare with it (same forms)",
    "fail_on_regression": "exit with status 4 when a metric of B is significantly worse than A's beyond its tolerance",
    **GATE_HELP,
})
def compare(c, a, b, fail_on_regression=False, tolerance=None, higher_is_better=None, lower_is_better=None):
    """Compare two runs, groups or baselines per RESULT metric (Welch's test); an A/B's two sides pair by pair."""
    from .. import against
    from .. import compare as comparing

    runs_dir = session(c).settings.runs_dir
    side_a, side_b = comparing.resolve(runs_dir, a), comparing.resolve(runs_dir, b)
    ab_id = against.sides_of(runs_dir, side_a.name, side_b.name)
    if ab_id:
        gating = {"tolerance": tolerance or (), "higher_is_better": higher_is_better or (),
                  "lower_is_better": lower_is_better or ()}
        ab_gate(runs_dir, ab_id, gating if any(gating.values()) else None, fail=fail_on_regression)
        return
    gate(runs_dir, side_a, side_b, tolerance=tolerance or (), higher_is_better=higher_is_better or (),
         lower_is_better=lower_is_better or (), fail=fail_on_regression)


@task(name="save", positional=["name", "ref"], help={
    "name": "the baseline's name (letters, digits, . _ -)", "ref": "a run, group, unique prefix or `latest`"})
def baseline_save(c, name, ref):
    """Save a run or group as a named baseline (a snapshot of its metrics) in RUNS_DIR/baselines."""
    from .. import compare as comparing

    runs_dir = session(c).settings.runs_dir
    side, replaced = comparing.save_baseline(runs_dir, name, ref)
    say(f"baseline {name} {'replaced: now' if replaced else '='} {side.kind} {side.name} "
        f"({len(side.runs)} run{'s' if len(side.runs) != 1 else ''})")


@task(name="list")
def baseline_list(c):
    """List the saved baselines: name, what they hold, when they were saved."""
    from .. import compare as comparing

    found = comparing.list_baselines(session(c).settings.runs_dir)
    if not found:
        say("no baselines yet; save one with `inv baseline.save NAME latest`")
        return
    show(table([("name", "kind", "source", "runs", "commit", "saved"),
                *[(b["name"], b["kind"], b["source"], str(b["n"]), b["commit"], b["saved"]) for b in found]]))


@task(name="rm", positional=["name"], help={"name": "the baseline to remove"})
def baseline_rm(c, name):
    """Remove a saved baseline (the runs it was taken from stay)."""
    from .. import compare as comparing

    comparing.remove_baseline(session(c).settings.runs_dir, name)
    say(f"removed baseline {name}")


@task(name="report", iterable=["ref"], help={
    "ref": "a run, group, A/B, prefix, `latest` or baseline to include "
           "(repeatable; default: the latest group or A/B, or the latest 10 runs)"})
def report(c, ref=None):
    """Write RUNS_DIR/report.html: runs, curves per epoch and over time, group spread, A/B pairs, GPU use."""
    from .. import report as reporting

    path = reporting.write(session(c).settings.runs_dir, ref or [])
    show(str(path))


baseline = Collection("baseline", baseline_save, baseline_list, baseline_rm)
ns = Collection(compare, report)
ns.add_collection(baseline)
