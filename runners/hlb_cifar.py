"""hlb-style CIFAR-10 speedrun trainer: one file, needs only torch and cifar10_data.py beside it.

    python runners/hlb_cifar.py --epochs 0.5 --synthetic      # smoke test, any machine
    python runners/hlb_cifar.py                               # the real run (downloads CIFAR-10 once)

remote-run writes this file unchanged into the run's copy of the workspace as scripts/run_hlb.py
(cifar10_data.py beside it) and passes train-hlb's options as flags; by hand, from that copy:
`python scripts/run_hlb.py --epochs 0.5 --synthetic --subset 4096`.

Written from hlb-CIFAR10 / airbench94 (airbench94.py in github.com/KellerJordan/cifar10-airbench):
a 2x2 patch-whitening first conv (weights frozen, bias trained for the first 3 epochs only), GELU
conv groups whose BatchNorms have a frozen weight and fast statistics, label smoothing 0.2,
Nesterov SGD with linear warmup then decay, Lookahead toward an EMA of the weights every 5 steps
(the run ends on the EMA weights), airbench94's 6-view test-time augmentation (mirror x 1-pixel
translations), on-device data (reflect-padded random crops, alternating flips), channels_last,
autocast, optional torch.compile. Prints a per-epoch table (its val_acc: plain test images) and
last one line: RESULT_HLB elapsed_seconds= train_epochs= ema_val_acc= images_per_second= device=
val_acc= eval_seconds=

What is timed. First, untimed, WARMUP_STEPS training steps and one evaluation batch run on the
real model and data (CUDA start-up, cuDNN autotuning, torch.compile); then the weights, BatchNorm
statistics and whitening bias are restored and a fresh optimizer made, so the timed run computes
exactly what it would have without them. elapsed_seconds is the training: each epoch's on-device
augmentation and shuffle, optimizer steps and Lookahead updates, device-synchronised. Left out:
loading/downloading/caching the data, moving, normalising and padding it on the device, building
the model and initialising the whitening layer, the warm-up (and compilation), every evaluation.
eval_seconds times the final test-time-augmented evaluation alone; airbench94's reported time is
elapsed_seconds + eval_seconds + its whitening initialisation. images_per_second = training
images / elapsed_seconds. ema_val_acc: the final (EMA) weights with test-time augmentation;
val_acc: the same weights on the plain test images.
"""
import argparse
import copy
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from cifar10_data import DatasetError, default_data_dir, load_cifar10

# Defaults of the flags (parse_args); remote-run passes what you chose as flags.
EPOCHS = 11.5
BATCH_SIZE = 1024
SEED = 0
COMPILE = False
SYNTHETIC = False
SUBSET = None
DATA_DIR = None

WIDTHS = (64, 256, 256)  # channels of the three conv groups
BN_MOMENTUM = 0.4  # PyTorch convention: running = 0.6*running + 0.4*batch. A short run moves the
#                    weights fast, so the running statistics must follow quickly to be usable at eval.
LABEL_SMOOTHING = 0.2
MOMENTUM = 0.85  # Nesterov
# The loss is summed over the batch, so these are per-example; 1 + 1/(1-m) normalises for the
# extra step size that (Nesterov) momentum m adds. Weight decay is kept independent of the lr.
LR = 11.5 / (1024 * (1 + 1 / (1 - MOMENTUM)))
WEIGHT_DECAY = 0.0153 / (1024 * (1 + 1 / (1 - MOMENTUM)))
BIAS_LR_SCALE = 64.0  # BatchNorm biases (their weights are frozen) learn this much faster
WARMUP_FRACTION = 0.23  # lr factor 0.2 -> 1.0 over this fraction of the steps, then -> 0.07
LOOKAHEAD_EVERY = 5  # steps between pulls of the weights onto their EMA
WHITEN_BIAS_EPOCHS = 3  # the whitening bias trains this long, then is frozen (airbench94: whiten_bias_epochs)
# Untimed steps before the run: the first pays the start-up and cuDNN autotuning, the second runs
# with momentum buffers (as every later step does) and, when the run will freeze the whitening
# bias, with it frozen, so that --compile builds both graphs before the clock starts.
WARMUP_STEPS = 2
EVAL_BATCH = 2000
CROP_PAD = 2  # random translation of up to 2 pixels (reflect padding)
MEAN = (125.31, 122.95, 113.87)  # CIFAR-10 per-channel pixel statistics
STD = (62.99, 62.09, 66.70)


def batch_norm(channels):
    bn = nn.BatchNorm2d(channels, momentum=BN_MOMENTUM)
    bn.weight.requires_grad_(False)  # frozen at 1: only the bias (shift) is learned
    return bn


def conv3x3(c_in, c_out):
    conv = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
    nn.init.dirac_(conv.weight.data[:c_in])  # identity init: the first c_in filters pass their input through
    return conv


def conv_group(c_in, c_out):
    return nn.Sequential(conv3x3(c_in, c_out), nn.MaxPool2d(2), batch_norm(c_out), nn.GELU(),
                         conv3x3(c_out, c_out), batch_norm(c_out), nn.GELU())


class Net(nn.Sequential):
    def forward(self, x):
        return super().forward(x) / 9  # a fixed temperature on the logits


def make_model():
    whiten = nn.Conv2d(3, 24, kernel_size=2)  # 2x2 patches, 12 whitened directions and their negatives
    whiten.weight.requires_grad_(False)
    return Net(whiten, nn.GELU(), conv_group(24, WIDTHS[0]), conv_group(WIDTHS[0], WIDTHS[1]),
               conv_group(WIDTHS[1], WIDTHS[2]), nn.AdaptiveMaxPool2d(1), nn.Flatten(),
               nn.Linear(WIDTHS[2], 10, bias=False))


@torch.no_grad()
def init_whitening(conv, images, eps=5e-4):
    """Make `conv` map each 2x2 patch to zero mean and identity covariance (estimated on `images`)."""
    c, k = images.shape[1], conv.kernel_size[0]
    patches = images[:5000].float().unfold(2, k, 1).unfold(3, k, 1)  # N, C, H', W', k, k
    patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k).double()
    eigenvalues, eigenvectors = torch.linalg.eigh(torch.cov(patches.T))
    filters = eigenvectors.T / (eigenvalues[:, None] + eps).sqrt()
    filters = torch.cat([filters, -filters])  # GELU then sees both signs of every direction
    conv.weight.copy_(filters.reshape(-1, c, k, k))
    conv.bias.copy_(-filters @ patches.mean(0))


def make_optimizer(model, batch_size):
    biases = [m.bias for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    others = [p for p in model.parameters() if p.requires_grad and all(p is not b for b in biases)]
    decay = WEIGHT_DECAY * batch_size  # per step; torch's SGD multiplies weight_decay by the lr
    groups = [dict(params=others, lr=LR), dict(params=biases, lr=LR * BIAS_LR_SCALE)]
    for g in groups:
        g.update(base_lr=g["lr"], weight_decay=decay / g["lr"])
    return torch.optim.SGD(groups, momentum=MOMENTUM, nesterov=True)


def lr_factor(step, total):
    warmup = max(1, round(WARMUP_FRACTION * total))
    if step < warmup:
        return 0.2 + 0.8 * step / warmup
    return 1.0 - 0.93 * (step - warmup) / max(1, total - warmup)


def autocast(device):
    # bf16 on CUDA (unlike fp16 it needs no loss scaling). A CPU without native bf16 (AVX512-BF16,
    # AMX) runs bf16 about 10x slower than fp32 (measured on a 2-core EPYC), so CPUs stay in fp32.
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")


def train_step(model, optimizer, images, labels, lr_scale=1.0):
    """One optimizer step; returns (summed loss, number correct) as tensors, without a device sync."""
    for g in optimizer.param_groups:
        g["lr"] = g["base_lr"] * lr_scale
    with autocast(images.device):
        logits = model(images)
    loss = F.cross_entropy(logits.float(), labels, label_smoothing=LABEL_SMOOTHING, reduction="sum")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), (logits.argmax(1) == labels).sum()


class Lookahead:
    """An EMA of the weights (and BatchNorm statistics); update() moves it and pulls the model onto it."""

    def __init__(self, model):
        self.ema = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    @torch.no_grad()
    def update(self, model, decay):
        for name, value in model.state_dict().items():
            if name in self.ema:
                self.ema[name].lerp_(value, 1 - decay)
                value.copy_(self.ema[name])


def tta_logits(model, x):
    """airbench94's tta_level=2 (infer_mirror_translate): the image and its mirror weigh 1/4 each;
    the image shifted one pixel up-left and one pixel down-right (reflect padding), each with its
    mirror, weigh 1/8 each. Views go in channels_last so every call has the same layout."""
    def mirror(v):
        v = v.contiguous(memory_format=torch.channels_last)
        return 0.5 * model(v).float() + 0.5 * model(v.flip(3)).float()

    padded = F.pad(x, (1, 1, 1, 1), mode="reflect")
    shifted = 0.5 * mirror(padded[:, :, :32, :32]) + 0.5 * mirror(padded[:, :, 2:, 2:])
    return 0.5 * mirror(x) + 0.5 * shifted


@torch.no_grad()
def evaluate(model, images, labels, tta=False, batch_size=EVAL_BATCH):
    """Accuracy, on the plain images or with tta_logits."""
    model.eval()
    correct = 0
    for i in range(0, len(images), batch_size):
        x = images[i:i + batch_size].contiguous(memory_format=torch.channels_last)
        with autocast(x.device):
            logits = tta_logits(model, x) if tta else model(x)
        correct += (logits.argmax(1) == labels[i:i + batch_size]).sum().item()
    model.train()
    return correct / len(images)


def steps_per_epoch(n_images, batch_size):
    return max(1, n_images // batch_size)  # the last partial batch is dropped: every step is full


def total_steps(epochs, per_epoch):
    """ceil(epochs x steps per epoch), ignoring float noise: 0.5 epochs of 10 steps is exactly 5."""
    return max(1, math.ceil(round(epochs * per_epoch, 6)))


def to_device(images, device, dtype):
    """uint8 NHWC on the CPU -> normalised NCHW on the device."""
    x = images.to(device).permute(0, 3, 1, 2).float()
    mean, std = torch.tensor(MEAN, device=device), torch.tensor(STD, device=device)
    return ((x - mean[:, None, None]) / std[:, None, None]).to(dtype).contiguous()


def warm_up(forward, model, padded, labels, test_images, test_labels, batch_size, freezes_bias):
    """Run WARMUP_STEPS steps and one evaluation batch on the real model and data, then restore the
    model: cold-start costs (CUDA context, cuDNN autotuning, torch.compile) land here, not in the
    timed run, and the timed run computes exactly what it would have without this (no RNG is drawn:
    the crops come from a throwaway generator, the optimizer is thrown away). The evaluation batch
    is a plain one: test-time augmentation feeds the model views of that same shape and layout."""
    state = copy.deepcopy(model.state_dict())
    optimizer, lookahead = make_optimizer(model, batch_size), Lookahead(model)
    gen = torch.Generator(padded.device).manual_seed(0)
    images = random_crop(padded[:batch_size], 32, gen)  # the same on-device ops as an epoch's
    images = torch.where((torch.rand(batch_size, device=padded.device, generator=gen) < 0.5)[:, None, None, None],
                         images.flip(3), images)
    order = torch.randperm(batch_size, device=padded.device, generator=gen)
    x = images[order].contiguous(memory_format=torch.channels_last)
    for i in range(WARMUP_STEPS):
        # Freezing changes the backward graph; under --compile that graph compiles here too.
        model[0].bias.requires_grad_(not (freezes_bias and i == WARMUP_STEPS - 1))
        train_step(forward, optimizer, x, labels[:batch_size][order], 1.0)
    lookahead.update(model, decay=0.5)
    evaluate(forward, test_images[:EVAL_BATCH], test_labels[:EVAL_BATCH])
    model.load_state_dict(state)
    model[0].bias.requires_grad_(True)


def random_crop(padded, size, gen):
    """Crop each image at its own random offset, with two gathers (no Python loop over images)."""
    n, c, h, w = padded.shape
    dy, dx = (torch.randint(0, h - size + 1, (2, n), device=padded.device, generator=gen))
    span = torch.arange(size, device=padded.device)
    rows = (dy[:, None] + span)[:, None, :, None].expand(n, c, size, w)
    cols = (dx[:, None] + span)[:, None, None, :].expand(n, c, size, size)
    return padded.gather(2, rows).gather(3, cols)


def parse_args(argv=None):
    p = OneLineErrors(description="hlb-style CIFAR-10 speedrun trainer")
    p.add_argument("--epochs", type=float, default=EPOCHS, help="may be fractional (default %(default)s)")
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--compile", action=argparse.BooleanOptionalAction, default=COMPILE, help="torch.compile")
    p.add_argument("--synthetic", action=argparse.BooleanOptionalAction, default=SYNTHETIC,
                   help="generated data of CIFAR-10's shape: no download")
    p.add_argument("--subset", type=int, default=SUBSET, help="use only the first N training images")
    p.add_argument("--data-dir", default=DATA_DIR,
                   help="default: $REMOTE_RUN_DATA/cifar10 (the shared cache), else ../data/cifar10")
    args = p.parse_args(argv)
    if not (math.isfinite(args.epochs) and args.epochs > 0):
        p.error(f"--epochs must be a finite number > 0, not {args.epochs}")
    if args.batch_size < 1:
        p.error(f"--batch-size must be >= 1, not {args.batch_size}")
    if args.subset is not None and args.subset < 1:
        p.error(f"--subset must be >= 1, not {args.subset}")
    args.data_dir = args.data_dir or default_data_dir(__file__)
    return args


class OneLineErrors(argparse.ArgumentParser):
    def error(self, message):  # one line on stderr and exit 2, instead of the usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv=None):
    """Train, print the table and the RESULT_HLB line; returns the trained model."""
    args = parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(f"device: {torch.cuda.get_device_name() if device.type == 'cuda' else 'cpu'}", flush=True)
    torch.backends.cudnn.benchmark = True
    try:
        train_x, train_y, test_x, test_y = load_cifar10(args.data_dir, args.synthetic, args.subset, seed=args.seed)
    except DatasetError as e:
        print(e, file=sys.stderr)
        raise SystemExit(2) from None
    torch.manual_seed(args.seed)
    gen = torch.Generator(device).manual_seed(args.seed)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    train_images = to_device(train_x, device, torch.float32)
    test_images = to_device(test_x, device, dtype).contiguous(memory_format=torch.channels_last)
    train_labels, test_labels = train_y.to(device), test_y.to(device)
    padded = F.pad(train_images, (CROP_PAD,) * 4, mode="reflect").to(dtype)

    model = make_model().to(device)
    init_whitening(model[0], train_images)
    model = model.to(memory_format=torch.channels_last)
    del train_images
    batch_size = min(args.batch_size, len(train_labels))
    per_epoch = steps_per_epoch(len(train_labels), batch_size)
    total = total_steps(args.epochs, per_epoch)
    # airbench94 trains the whitening bias for whiten_bias_epochs=3 epochs, then freezes it; a run of
    # fewer epochs trains it throughout.
    bias_steps = total_steps(min(WHITEN_BIAS_EPOCHS, args.epochs), per_epoch)
    forward = torch.compile(model) if args.compile else model
    if WARMUP_STEPS:
        start = time.perf_counter()
        warm_up(forward, model, padded, train_labels, test_images, test_labels, batch_size, bias_steps < total)
        synchronize(device)
        print(f"warm-up: {WARMUP_STEPS} steps and 1 evaluation batch{' with torch.compile' * args.compile}, "
              f"{time.perf_counter() - start:.1f}s (not counted)", flush=True)
    optimizer = make_optimizer(model, batch_size)
    lookahead = Lookahead(model)
    base_flip = torch.rand(len(padded), device=device, generator=gen) < 0.5

    print(f"{'epoch':>7} {'train_loss':>10} {'train_acc':>9} {'val_acc':>8} {'time_s':>7}", flush=True)
    step, elapsed = 0, 0.0  # training only: see "What is timed" at the top
    for epoch in range(math.ceil(total / per_epoch)):
        synchronize(device)
        start = time.perf_counter()
        images = random_crop(padded, 32, gen)
        flip = base_flip ^ bool(epoch % 2)  # alternating flip: epoch 0 random, then every image toggles
        images = torch.where(flip[:, None, None, None], images.flip(3), images)
        order = torch.randperm(len(images), device=device, generator=gen)
        loss_sum = correct = 0
        steps_now = min(per_epoch, total - step)
        for i in range(steps_now):
            idx = order[i * batch_size:(i + 1) * batch_size]
            x = images[idx].contiguous(memory_format=torch.channels_last)
            model[0].bias.requires_grad_(step < bias_steps)  # frozen: no gradient, so SGD skips it
            loss, right = train_step(forward, optimizer, x, train_labels[idx], lr_factor(step, total))
            loss_sum, correct, step = loss_sum + loss, correct + right, step + 1
            # As airbench94's loop does: `if current_steps % 5 == 0: lookahead_state.update(model,
            # decay=alpha_schedule[current_steps])`, the last step included, then at the last step
            # `lookahead_state.update(model, decay=1.0)`, which copies the EMA into the model. So the
            # model ends on the EMA weights, and steps after the last multiple of 5 are dropped.
            if step % LOOKAHEAD_EVERY == 0:
                lookahead.update(model, decay=0.95 ** LOOKAHEAD_EVERY * (step / total) ** 3)
            if step == total:
                lookahead.update(model, decay=1.0)
        synchronize(device)
        epoch_time = time.perf_counter() - start
        elapsed += epoch_time
        seen = steps_now * batch_size
        val_acc = evaluate(forward, test_images, test_labels)
        print(f"{step / per_epoch:7.2f} {loss_sum.item() / seen:10.4f} {correct.item() / seen:9.4f} "
              f"{val_acc:8.4f} {epoch_time:7.2f}", flush=True)
    synchronize(device)
    start = time.perf_counter()
    tta_acc = evaluate(forward, test_images, test_labels, tta=True)  # .item() has synchronised
    eval_seconds = time.perf_counter() - start
    print(f"RESULT_HLB elapsed_seconds={elapsed:.4f} train_epochs={total / per_epoch:.4f} "
          f"ema_val_acc={tta_acc:.4f} images_per_second={total * batch_size / elapsed:.1f} device={device.type} "
          f"val_acc={val_acc:.4f} eval_seconds={eval_seconds:.4f}")
    return model


if __name__ == "__main__":
    main()
