"""The CIFAR-10 trainers in runners/, on the CPU, small: synthetic or fake data, no internet; and
what remote-run sends them: the files unchanged, the options as flags."""
import math
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from remote_run import settings, trainers
from remote_run.errors import Failure

RUNNERS = Path(__file__).resolve().parents[2] / "runners"
sys.path.insert(0, str(RUNNERS))
import cifar10_data  # noqa: E402
import david_cifar  # noqa: E402
import hlb_cifar  # noqa: E402

EXPECTED_DEFAULTS = {
    "hlb_cifar.py": {"epochs": 11.5, "batch_size": 1024, "seed": 0, "compile": False, "synthetic": False,
                     "subset": None},
    "david_cifar.py": {"epochs": 12, "batch_size": 512, "seed": 0, "synthetic": False, "subset": None},
}
RESULT_KEYS = {
    "RESULT_HLB": {"elapsed_seconds": float, "train_epochs": float, "ema_val_acc": float,
                   "images_per_second": float, "device": str, "val_acc": float, "eval_seconds": float},
    "RESULT_DAVID": {"elapsed_seconds": float, "epochs": int, "batch_size": int, "val_acc": float,
                     "images_per_second": float, "device": str, "eval_seconds": float},
}
HEADER = f"{'epoch':>7} {'train_loss':>10} {'train_acc':>9} {'val_acc':>8} {'time_s':>7}"  # parsed by records.py


def parse_result(stdout, tag):
    lines = stdout.strip().splitlines()
    assert lines[-1].startswith(tag + " "), f"last line is not {tag}: {lines[-1]!r}"
    assert sum(line.startswith(tag) for line in lines) == 1
    pairs = dict(item.split("=", 1) for item in lines[-1].split()[1:])
    assert list(pairs)[:len(RESULT_KEYS[tag]) - 2] == list(RESULT_KEYS[tag])[:-2]  # the old keys, first, in order
    assert set(pairs) == set(RESULT_KEYS[tag])
    return {key: RESULT_KEYS[tag][key](value) for key, value in pairs.items()}


def table_rows(stdout):
    """The per-epoch rows under the header, as lists of strings."""
    lines = stdout.splitlines()
    start = lines.index(HEADER) + 1
    end = next(i for i in range(start, len(lines)) if lines[i].startswith("RESULT_"))
    return [line.split() for line in lines[start:end]]


# One thread everywhere: on 2 cores shared with other work, torch's 2-thread barriers stall badly
# (a toy run took 5x longer); one thread keeps this file's time steady.
@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(args, cwd):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("script", sorted(EXPECTED_DEFAULTS))
def test_defaults_live_in_the_runners_argparse_and_flags_override_them(script):
    module = hlb_cifar if script == "hlb_cifar.py" else david_cifar
    defaults = vars(module.parse_args([]))
    assert {k: defaults[k] for k in EXPECTED_DEFAULTS[script]} == EXPECTED_DEFAULTS[script]
    assert all(type(defaults[k]) is type(v) for k, v in EXPECTED_DEFAULTS[script].items())
    args = module.parse_args(["--epochs", "3", "--batch-size", "256", "--seed", "7", "--synthetic", "--subset", "1000",
                              "--data-dir", "/d/c"])
    assert (args.epochs, args.batch_size, args.seed, args.synthetic, args.subset, args.data_dir) == \
        (3, 256, 7, True, 1000, "/d/c")
    assert module.parse_args(["--epochs", "2", "--no-synthetic"]).synthetic is False


def load_settings(workspace, **environ):
    return settings.load(environ={"WORKSPACE": str(workspace), **environ})


def write_run_copy(root, files):
    """What the host does with RunSpec.files: write them into the run's copy of the workspace."""
    for relative, text in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_text(text)


# (trainer, impl, the runner in runners/, the files beside it, two runs' options)
TWO_RUNS = [
    ("hlb", "builtin", "hlb_cifar.py", ["cifar10_data.py"], dict(epochs="1", synthetic=True, subset="128"),
     dict(epochs="2.5", seed="3", batch_size="64", compile=True)),
    ("hlb", "workspace", "hlb_workspace.py", ["remote_run_offline.py"], dict(epochs="1"), dict(epochs="11.5")),
    ("david", "builtin", "david_cifar.py", ["cifar10_data.py"], dict(epochs="1", synthetic=True),
     dict(epochs="24", batch_size="256", seed="5", subset="1000")),
    ("david", "workspace", "david_workspace.py", ["remote_run_offline.py"], dict(), dict(epochs="3", batch_size="64")),
]


@pytest.mark.parametrize("trainer, impl, runner, beside, first, second", TWO_RUNS,
                         ids=[f"{r[0]}-{r[1]}" for r in TWO_RUNS])
def test_two_runs_carry_byte_identical_runner_files_and_differ_only_in_argv(tmp_path, trainer, impl, runner, beside,
                                                                           first, second):
    s = load_settings(tmp_path)
    a = getattr(trainers, trainer)(s, "python", impl=impl, **first)
    b = getattr(trainers, trainer)(s, "python", impl=impl, **second)
    unchanged = {a.runner_path: (RUNNERS / runner).read_text(),
                 **{f"scripts/{n}": (RUNNERS / n).read_text() for n in beside}}
    assert a.files == b.files == unchanged  # the files in runners/, byte for byte
    assert a.argv[:2] == ["python", a.runner_path] and a.argv != b.argv
    assert replace(a, argv=b.argv, options=b.options) == b  # nothing else differs (the options are recorded)


def test_the_options_are_recorded_as_before_and_passed_as_flags(tmp_path):
    s = load_settings(tmp_path, HLB_MODULE="lab.hlb", DAVID_NET_MODULE="lab.nets", DAVID_TRAINER_MODULE="lab.trainer")
    spec = trainers.hlb(s, "py", epochs="11.5", impl="builtin", batch_size="256", seed="0", synthetic=True,
                        subset="4096")
    # a seed of 0 was given, so it is passed; --compile is off: left out
    assert spec.argv == ["py", "scripts/run_hlb.py", "--epochs", "11.5", "--synthetic", "--seed", "0",
                         "--subset", "4096", "--batch-size", "256"]
    assert spec.options == {"impl": "builtin", "epochs": 11.5, "synthetic": True, "seed": 0, "subset": 4096,
                            "compile": False, "batch_size": 256}
    spec = trainers.hlb(s, "py", epochs="0.5", impl="workspace")
    assert spec.argv == ["py", "scripts/run_hlb.py", "--epochs", "0.5", "--hlb-module", "lab.hlb"]
    assert spec.options == {"impl": "workspace", "epochs": 0.5, "hlb_module": "lab.hlb"}
    spec = trainers.david(s, "py", impl="builtin")
    assert spec.argv == ["py", "scripts/run_david_trainer.py", "--epochs", "12", "--batch-size", "512"]
    assert spec.options == {"impl": "builtin", "epochs": 12, "batch_size": 512, "synthetic": False}
    spec = trainers.david(s, "py", epochs="3", impl="workspace")
    assert spec.argv == ["py", "scripts/run_david_trainer.py", "--epochs", "3", "--batch-size", "512",
                         "--david-net-module", "lab.nets", "--david-trainer-module", "lab.trainer"]
    assert spec.options == {"impl": "workspace", "epochs": 3, "batch_size": 512, "david_net_module": "lab.nets",
                            "david_trainer_module": "lab.trainer"}


@pytest.mark.parametrize("trainer, module", [("hlb", hlb_cifar), ("david", david_cifar)])
def test_the_builtin_runners_read_every_flag_remote_run_passes(tmp_path, trainer, module):
    extra = {"compile": True} if trainer == "hlb" else {}
    spec = getattr(trainers, trainer)(load_settings(tmp_path), "py", epochs="3", impl="builtin", batch_size="64",
                                      seed="9", synthetic=True, subset="128", **extra)
    args = module.parse_args(spec.argv[2:])
    options = {k: v for k, v in spec.options.items() if k != "impl"}
    assert {k: getattr(args, k) for k in options} == options


def test_hlb_runs_by_hand_with_the_flags_remote_run_gives_it(tmp_path):
    """The run's copy as remote-run lays it out (scripts/run_hlb.py, cifar10_data.py beside it), run
    from its root with the RunSpec's argv. 256 images in batches of 64 are 4 steps an epoch, so 0.5
    epochs are 2 steps: train_epochs=0.5 only if --subset and --batch-size took effect."""
    spec = trainers.hlb(load_settings(tmp_path), sys.executable, epochs="0.5", impl="builtin", batch_size="64",
                        synthetic=True, subset="256")
    write_run_copy(tmp_path, spec.files)
    proc = run(spec.argv[1:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "device: cpu" and lines[1].startswith("warm-up: 2 steps") and lines[2] == HEADER
    assert len(table_rows(proc.stdout)) == 1
    result = parse_result(proc.stdout, "RESULT_HLB")
    assert result["train_epochs"] == 0.5 and result["device"] == "cpu"
    assert result["elapsed_seconds"] > 0 and result["images_per_second"] > 0 and result["eval_seconds"] > 0
    assert 0 <= result["ema_val_acc"] <= 1 and 0 <= result["val_acc"] <= 1


def test_david_runs_as_remote_run_lays_it_out_on_the_default_data_dir(tmp_path):
    """As remote-run lays it out: the run's copy with scripts/run_david_trainer.py + cifar10_data.py,
    run from its root with the RunSpec's flags, data from the cache in data/cifar10 (here a small
    fake one)."""
    spec = trainers.david(load_settings(tmp_path), sys.executable, epochs="1", batch_size="16", impl="builtin",
                          subset="64")
    write_run_copy(tmp_path, spec.files)
    data_dir = tmp_path / "data" / "cifar10"
    data_dir.mkdir(parents=True)
    # The cache must look like all of CIFAR-10 (the loader checks); --subset is taken after loading.
    # 100 copies of a small synthetic set: the right sizes, generated in a fraction of the time.
    small = cifar10_data.synthetic_cifar10(500, 100, seed=3)
    data = {k: t.repeat(100, *[1] * (t.dim() - 1)) for k, t in zip(cifar10_data.TENSORS, small)}
    cifar10_data.write_cache(data_dir / cifar10_data.CACHE, {**data, "classes": cifar10_data.CLASSES})
    proc = run(spec.argv[1:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = parse_result(proc.stdout, "RESULT_DAVID")
    assert (result["epochs"], result["batch_size"], result["device"]) == (1, 16, "cpu")
    assert result["elapsed_seconds"] > 0 and result["images_per_second"] > 0 and result["eval_seconds"] > 0
    assert 0 <= result["val_acc"] <= 1 and len(table_rows(proc.stdout)) == 1


LAB = {  # stand-ins for the workspace's CVlization modules, named by HLB_MODULE and DAVID_*_MODULE
    "lab/__init__.py": "",
    "lab/hlb.py": "hyp = {'misc': {}}\n\ndef main():\n"
                  "    print('lab hlb', hyp['misc']['train_epochs'])\n    return 0.5\n",
    "lab/nets.py": "class Network:\n    def __init__(self, net): pass\n    def to(self, device): return self\n"
                   "    def half(self): return self\n\ndef net(): return None\n",
    "lab/trainer.py": "class DavidTrainer:\n    def __init__(self, **kw): self.kw = kw\n"
                      "    def train(self): print('lab david', self.kw['epochs'], self.kw['train_batch_size'])\n",
}


def test_the_workspace_runners_call_the_modules_their_flags_name(tmp_path):
    s = load_settings(tmp_path, HLB_MODULE="lab.hlb", DAVID_NET_MODULE="lab.nets", DAVID_TRAINER_MODULE="lab.trainer")
    write_run_copy(tmp_path, LAB)
    hlb = trainers.hlb(s, sys.executable, epochs="2.5", impl="workspace")
    david = trainers.david(s, sys.executable, epochs="3", batch_size="64", impl="workspace")
    write_run_copy(tmp_path, {**hlb.files, **david.files})
    proc = run(hlb.argv[1:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "lab hlb 2.5" in proc.stdout and "train_epochs=2.5 ema_val_acc=0.5000" in proc.stdout.splitlines()[-1]
    proc = run(david.argv[1:], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "lab david 3 64" in proc.stdout and proc.stdout.splitlines()[-1].endswith("epochs=3 batch_size=64")


@pytest.mark.parametrize("epochs", ["nan", "inf", "-inf", "1e999"])
def test_a_non_finite_epochs_is_refused_in_one_line_before_a_run_is_made(tmp_path, epochs):
    """Values that could never be written as a Python literal are still refused here, on this machine."""
    s = load_settings(tmp_path)
    for trainer in (trainers.hlb, trainers.david):
        with pytest.raises(Failure) as refused:
            trainer(s, "py", epochs=epochs)
        assert refused.value.line.startswith(f"--epochs={epochs!r} is not valid") and "\n" not in refused.value.line


@pytest.mark.parametrize("value", ["x'); import os; os.system('id')  #", "a b", "os;touch /tmp/canary", "-m", ""])
def test_a_module_setting_that_is_not_a_module_name_is_refused_in_one_line(tmp_path, value):
    """A module setting becomes a flag's value: only dotted names get that far."""
    for key in ("HLB_MODULE", "DAVID_NET_MODULE", "DAVID_TRAINER_MODULE"):
        with pytest.raises(Failure) as refused:
            load_settings(tmp_path, **{key: value})
        assert refused.value.line.startswith(f"{key}=") and "\n" not in refused.value.line


@pytest.mark.parametrize("epochs, per_epoch, steps", [
    (0.5, 10, 5), (11.5, 48, 552), (0.1, 30, 3), (0.3, 10, 3), (0.25, 10, 3), (1e-9, 10, 1), (2, 4, 8)])
def test_total_steps_rule(epochs, per_epoch, steps):
    assert hlb_cifar.total_steps(epochs, per_epoch) == steps


def test_fractional_epochs_stop_at_the_right_step(monkeypatch, capsys):
    steps = []
    real_step = hlb_cifar.train_step

    def counting(*args):
        steps.append(args[-1])  # the lr factor
        return real_step(*args)

    monkeypatch.setattr(hlb_cifar, "train_step", counting)
    # 64 images / 16 per batch = 4 steps per epoch; 1.25 epochs = 5 steps: one full epoch + one step
    hlb_cifar.main(["--synthetic", "--subset", "64", "--batch-size", "16", "--epochs", "1.25"])
    out = capsys.readouterr().out
    warmup = hlb_cifar.WARMUP_STEPS
    assert warmup >= 1 and steps[:warmup] == [1.0] * warmup  # the untimed warm-up steps come first
    assert len(steps) == warmup + 5 and steps[warmup] == pytest.approx(0.2)
    assert parse_result(out, "RESULT_HLB")["train_epochs"] == 1.25
    assert [row[0] for row in table_rows(out)] == ["1.00", "1.25"]


def run_main(module, argv, capsys, warmup_steps, monkeypatch):
    monkeypatch.setattr(module, "WARMUP_STEPS", warmup_steps)
    model = module.main(argv)
    out = capsys.readouterr().out
    return model.state_dict(), out


@pytest.mark.parametrize("module, argv", [
    # 15 steps: Lookahead at 5, 10, 15, the whitening bias frozen after 12
    (hlb_cifar, ["--synthetic", "--subset", "32", "--batch-size", "8", "--epochs", "3.75", "--seed", "3"]),
    (david_cifar, ["--synthetic", "--subset", "48", "--batch-size", "8", "--epochs", "1", "--seed", "3"]),
])
def test_the_warm_up_does_not_change_what_the_run_computes(module, argv, capsys, monkeypatch):
    """Same seed, with and without the warm-up: the same weights, losses and accuracies, bit for bit."""
    initial = module.make_model().state_dict()
    cold_state, cold = run_main(module, argv, capsys, 0, monkeypatch)
    warm_state, warm = run_main(module, argv, capsys, 2, monkeypatch)
    assert "warm-up:" not in cold and "warm-up: 2 steps" in warm
    tag = "RESULT_HLB" if module is hlb_cifar else "RESULT_DAVID"
    timings = {"elapsed_seconds", "images_per_second", "eval_seconds"}
    cold_result, warm_result = parse_result(cold, tag), parse_result(warm, tag)
    assert {k: v for k, v in cold_result.items() if k not in timings} == \
        {k: v for k, v in warm_result.items() if k not in timings}
    assert [row[:-1] for row in table_rows(cold)] == [row[:-1] for row in table_rows(warm)]  # all but time_s
    assert cold_state.keys() == warm_state.keys() == initial.keys()
    assert all(torch.equal(cold_state[k], warm_state[k]) for k in cold_state)
    assert not all(torch.equal(cold_state[k], initial[k]) for k in initial)  # it did train


def test_whitening_bias_trains_for_3_epochs_then_freezes_and_lookahead_takes_the_last_step(monkeypatch, capsys):
    monkeypatch.setattr(hlb_cifar, "WARMUP_STEPS", 0)
    trainable, moved, decays = [], [], []
    real_step, real_update = hlb_cifar.train_step, hlb_cifar.Lookahead.update

    def watching(model, optimizer, images, labels, lr_scale):
        bias = model[0].bias
        before = bias.detach().clone()
        result = real_step(model, optimizer, images, labels, lr_scale)
        trainable.append(bias.requires_grad)
        moved.append(not torch.equal(before, bias.detach()))
        return result

    def recording(self, model, decay):
        decays.append((len(trainable), decay))
        return real_update(self, model, decay)

    monkeypatch.setattr(hlb_cifar, "train_step", watching)
    monkeypatch.setattr(hlb_cifar.Lookahead, "update", recording)
    # 4 steps per epoch, 3.75 epochs = 15 steps; the bias trains for 3 epochs = 12 steps
    hlb_cifar.main(["--synthetic", "--subset", "32", "--batch-size", "8", "--epochs", "3.75"])
    capsys.readouterr()
    assert trainable == [True] * 12 + [False] * 3
    assert moved == trainable  # a frozen bias gets no gradient, so SGD leaves it (and its decay) alone
    rho = 0.95 ** 5
    assert [step for step, _ in decays] == [5, 10, 15, 15]  # the last step (15) is averaged in, then copied
    assert [d for _, d in decays] == pytest.approx([rho / 27, rho * 8 / 27, rho, 1.0])


def test_a_short_run_trains_the_whitening_bias_throughout(monkeypatch, capsys):
    monkeypatch.setattr(hlb_cifar, "WARMUP_STEPS", 0)
    trainable = []
    real_step = hlb_cifar.train_step

    def watching(model, *args):
        trainable.append(model[0].bias.requires_grad)
        return real_step(model, *args)

    monkeypatch.setattr(hlb_cifar, "train_step", watching)
    hlb_cifar.main(["--synthetic", "--subset", "32", "--batch-size", "8", "--epochs", "0.75"])  # min(3, 0.75)
    capsys.readouterr()
    assert trainable == [True] * 3


def test_lookahead_update_at_decay_1_puts_the_model_on_the_ema():
    model = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2))
    lookahead = hlb_cifar.Lookahead(model)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model[0].weight.add_(1.0)
    lookahead.update(model, decay=0.75)  # the EMA moves a quarter of the way, the model follows
    assert torch.allclose(model[0].weight, start["0.weight"] + 0.25)
    with torch.no_grad():
        model[0].weight.add_(5.0)
    lookahead.update(model, decay=1.0)  # the EMA stays; the model is put back on it
    assert torch.allclose(model[0].weight, start["0.weight"] + 0.25)
    assert torch.equal(model[1].num_batches_tracked, start["1.num_batches_tracked"])  # integers are not averaged


class ViewRecorder(torch.nn.Module):
    """Logits that say which call produced them: call k puts a 1 in column k."""

    def __init__(self):
        super().__init__()
        self.views = []

    def forward(self, x):
        self.views.append(x.clone())
        logits = torch.zeros(len(x), 10)
        logits[:, len(self.views) - 1] = 1
        return logits


def test_tta_weighs_the_six_views_as_airbench94_does():
    x = torch.randn(2, 3, 32, 32)
    # One-pixel translations with reflect padding, by index: pixel -1 reflects to 1, pixel 32 to 30.
    down_right, up_left = [1, *range(31)], [*range(1, 32), 30]
    shifted = {name: x[:, :, idx][:, :, :, idx] for name, idx in [("down-right", down_right), ("up-left", up_left)]}
    views = {"plain": x, **shifted}
    views.update({f"{name} mirrored": v.flip(3) for name, v in list(views.items())})
    model = ViewRecorder()
    logits = hlb_cifar.tta_logits(model, x)
    assert len(model.views) == 6 and logits[:, 6:].abs().sum() == 0
    weights = {}
    for k, seen in enumerate(model.views):
        (name,) = [name for name, v in views.items() if torch.equal(seen, v)]
        weights[name] = logits[0, k].item()
    # airbench94 infer_mirror_translate: 0.5 * mirror(x) + 0.5 * mean(mirror(up-left), mirror(down-right))
    assert weights == pytest.approx({"plain": 0.25, "plain mirrored": 0.25, "down-right": 0.125, "up-left": 0.125,
                                     "down-right mirrored": 0.125, "up-left mirrored": 0.125})


def test_evaluate_with_and_without_tta():
    torch.manual_seed(0)
    images, labels = toy_set(n=20)
    model = hlb_cifar.make_model().to(memory_format=torch.channels_last)
    plain, tta = hlb_cifar.evaluate(model, images, labels), hlb_cifar.evaluate(model, images, labels, tta=True)
    assert model.training  # evaluate() puts the model back in training mode
    with torch.no_grad():
        model.eval()
        expected_plain = (model(images).argmax(1) == labels).float().mean().item()
        expected_tta = (hlb_cifar.tta_logits(model, images).argmax(1) == labels).float().mean().item()
    assert plain == pytest.approx(expected_plain) and tta == pytest.approx(expected_tta)


def test_lr_schedules():
    assert hlb_cifar.lr_factor(0, 100) == pytest.approx(0.2) and hlb_cifar.lr_factor(23, 100) == 1.0
    assert hlb_cifar.lr_factor(99, 100) == pytest.approx(1 - 0.93 * 76 / 77)
    assert david_cifar.lr_at(0, 12) == 0 and david_cifar.lr_at(5, 12) == 0.4 and david_cifar.lr_at(12, 12) == 0
    assert david_cifar.lr_at(1, 2) == 0.4 and david_cifar.lr_at(0.5, 2) == 0.2  # short runs peak half way


def toy_set(n=64, seed=0):
    """Label = the colour of the image (plus noise): learnable in a few steps."""
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 10, (n,), generator=gen)
    palette = torch.rand(10, 3, generator=gen) * 3 - 1.5
    images = palette[labels][:, :, None, None] + 0.5 * torch.randn(n, 3, 32, 32, generator=gen)
    return images.contiguous(memory_format=torch.channels_last), labels


@pytest.mark.parametrize("trainer, lr", [("hlb", 4.0), ("david", 0.05)])  # hlb: lr factor; david: lr
def test_loss_decreases_on_a_learnable_toy_set(trainer, lr):
    torch.manual_seed(0)
    images, labels = toy_set()
    module = hlb_cifar if trainer == "hlb" else david_cifar
    model = module.make_model()
    if trainer == "hlb":
        hlb_cifar.init_whitening(model[0], images)
    model = model.to(memory_format=torch.channels_last)
    batch = 8
    optimizer = module.make_optimizer(model, batch)
    losses = []
    for step in range(20):
        idx = torch.arange(step * batch, (step + 1) * batch) % len(labels)
        loss, correct = module.train_step(model, optimizer, images[idx], labels[idx], lr)
        assert 0 <= int(correct) <= batch
        losses.append(loss.item() / batch)
    assert all(math.isfinite(v) for v in losses)
    first, last = sum(losses[:3]) / 3, sum(losses[-5:]) / 5
    assert last < 0.75 * first, losses  # about 0.5 x here


@pytest.mark.parametrize("script", ["hlb_cifar.py", "david_cifar.py"])
@pytest.mark.parametrize("argv", [["--epochs", "0"], ["--epochs", "-1"], ["--epochs", "nan"], ["--batch-size", "0"],
                                  ["--epochs", "inf"], ["--subset", "0"], ["--epochs", "abc"]])
def test_bad_options_are_one_line_and_exit_2(script, argv, capsys):
    module = hlb_cifar if script == "hlb_cifar.py" else david_cifar
    with pytest.raises(SystemExit) as exc:
        module.parse_args(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "error:" in err


@pytest.mark.parametrize("script, argv", [("hlb_cifar.py", ["--epochs", "nan"]),
                                          ("david_cifar.py", ["--batch-size", "0"])])
def test_bad_options_in_a_real_process(script, argv, tmp_path):
    proc = run([RUNNERS / script, *argv], cwd=tmp_path)
    assert proc.returncode == 2 and proc.stdout == ""
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def test_default_data_dir_is_the_shared_cache_and_by_hand_beside_the_scripts_directory(monkeypatch):
    monkeypatch.delenv("REMOTE_RUN_DATA", raising=False)
    assert cifar10_data.default_data_dir("/r/scripts/run_hlb.py") == "/r/data/cifar10"
    assert hlb_cifar.parse_args([]).data_dir == str(RUNNERS.parent / "data" / "cifar10")
    monkeypatch.setenv("REMOTE_RUN_DATA", "/tmp/x_remote/.remote-run/data")  # what the host gives a run
    assert cifar10_data.default_data_dir("/r/scripts/run_hlb.py") == "/tmp/x_remote/.remote-run/data/cifar10"
    assert hlb_cifar.parse_args([]).data_dir == "/tmp/x_remote/.remote-run/data/cifar10"


def test_random_crop_and_alternating_flip_pieces():
    gen = torch.Generator().manual_seed(0)
    padded = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    crops = hlb_cifar.random_crop(padded, 4, gen)
    assert crops.shape == (2, 1, 4, 4)
    for i in range(2):  # every crop is a contiguous window of its own image
        assert any(torch.equal(crops[i, 0], padded[i, 0, y:y + 4, x:x + 4]) for y in range(3) for x in range(3))
    cut = david_cifar.augment(torch.ones(3, 3, 40, 40), gen)
    assert cut.shape == (3, 3, 32, 32) and all(int((img == 0).sum()) == 3 * 64 for img in cut)  # one 8x8 hole
