"""DavidNet-style ResNet-9 on CIFAR-10: one file, needs only torch and cifar10_data.py beside it.

    python runners/david_cifar.py --epochs 1 --synthetic     # smoke test, any machine
    python runners/david_cifar.py                            # the real run (downloads CIFAR-10 once)

remote-run writes this file unchanged into the run's copy of the workspace as
scripts/run_david_trainer.py (cifar10_data.py beside it) and passes train-david's options as
flags; by hand, from that copy: `python scripts/run_david_trainer.py --epochs 1 --synthetic`.

Written from David Page's published "How to train your ResNet" recipe: prep 64 -> layer1 128
(+residual) -> layer2 256 -> layer3 512 (+residual) -> 4x4 max-pool -> linear x 0.125; piecewise
linear lr 0 -> 0.4 -> 0, Nesterov momentum 0.9, weight decay 5e-4 x batch size with a summed loss;
random crop (reflect pad 4), flip and 8x8 cutout done on the device; fp16 on CUDA with BatchNorm in
fp32. The write-ups report 94% test accuracy at 24 epochs; the default here is a shorter 12, which
lands lower (see the README).

Prints a per-epoch table and, last, one line:
RESULT_DAVID elapsed_seconds=... epochs=... batch_size=... val_acc=... images_per_second=... device=...
eval_seconds=...

What is timed. First, untimed, WARMUP_STEPS training steps and one evaluation batch run on the
real model and data (CUDA start-up, cuDNN autotuning); then the weights and BatchNorm statistics
are restored and a fresh optimizer made, so the timed run computes exactly what it would have
without them. elapsed_seconds is the training: each epoch's on-device augmentation (crop, flip,
cutout, shuffle) and optimizer steps, device-synchronised. Left out: loading/downloading/caching
the data, moving, normalising and padding it on the device, building the model, the warm-up, every
evaluation (cifar10-fast's notebook totals do include its per-epoch test passes). eval_seconds
times the last evaluation (the val_acc reported) alone. images_per_second = training images /
elapsed_seconds.
"""
import argparse
import copy
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
from cifar10_data import DatasetError, default_data_dir, load_cifar10

# Defaults of the flags (parse_args); remote-run passes what you chose as flags.
EPOCHS = 12
BATCH_SIZE = 512
SEED = 0
SYNTHETIC = False
SUBSET = None
DATA_DIR = None

PEAK_LR = 0.4  # per example of a mean loss; see make_optimizer for how it is applied
PEAK_EPOCH = 5  # or half way, for runs shorter than 10 epochs
MOMENTUM = 0.9
WEIGHT_DECAY = 5e-4
CROP_PAD = 4
CUTOUT = 8
WARMUP_STEPS = 2  # untimed: the first pays start-up and cuDNN autotuning, the second runs with momentum buffers
EVAL_BATCH = 1000
MEAN = (125.31, 122.95, 113.87)  # CIFAR-10 per-channel pixel statistics
STD = (62.99, 62.09, 66.70)


def conv_bn(c_in, c_out):
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU())


class Residual(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.body = nn.Sequential(conv_bn(channels, channels), conv_bn(channels, channels))

    def forward(self, x):
        return x + self.body(x)


class Net(nn.Sequential):
    def forward(self, x):
        return super().forward(x) * 0.125


def make_model():
    return Net(conv_bn(3, 64),
               conv_bn(64, 128), nn.MaxPool2d(2), Residual(128),
               conv_bn(128, 256), nn.MaxPool2d(2),
               conv_bn(256, 512), nn.MaxPool2d(2), Residual(512),
               nn.MaxPool2d(4), nn.Flatten(), nn.Linear(512, 10, bias=False))


def make_optimizer(model, batch_size):
    # DavidNet's convention: the loss is summed over the batch, the lr is divided by the batch size
    # and the weight decay multiplied by it. With torch's SGD (decay added to the gradient, then
    # scaled by the lr) that is exactly a mean loss with lr = PEAK_LR and weight decay 5e-4.
    return torch.optim.SGD(model.parameters(), lr=0.0, momentum=MOMENTUM, nesterov=True,
                           weight_decay=WEIGHT_DECAY * batch_size)


def lr_at(epoch, epochs):
    """Piecewise linear in (fractional) epochs: 0 -> PEAK_LR at min(5, epochs/2) -> 0 at the end."""
    peak = min(PEAK_EPOCH, epochs / 2)
    if epoch < peak:
        return PEAK_LR * epoch / peak
    return PEAK_LR * max(0.0, (epochs - epoch) / (epochs - peak))


def train_step(model, optimizer, images, labels, lr):
    """One optimizer step at `lr` (per example); returns (summed loss, number correct) as tensors."""
    for g in optimizer.param_groups:
        g["lr"] = lr / len(labels)
    logits = model(images)
    loss = F.cross_entropy(logits.float(), labels, reduction="sum")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach(), (logits.argmax(1) == labels).sum()


@torch.no_grad()
def evaluate(model, images, labels, batch_size=EVAL_BATCH):
    model.eval()
    correct = sum((model(images[i:i + batch_size]).argmax(1) == labels[i:i + batch_size]).sum().item()
                  for i in range(0, len(images), batch_size))
    model.train()
    return correct / len(images)


def to_device(images, device, dtype):
    """uint8 NHWC on the CPU -> normalised NCHW on the device."""
    x = images.to(device).permute(0, 3, 1, 2).float()
    mean, std = torch.tensor(MEAN, device=device), torch.tensor(STD, device=device)
    return ((x - mean[:, None, None]) / std[:, None, None]).to(dtype).contiguous()


def augment(padded, gen):
    """Random 32x32 crop, random flip and an 8x8 cutout (zero = the mean) per image, all as tensor ops."""
    n, c, h, w = padded.shape
    dev, span = padded.device, torch.arange(32, device=padded.device)
    dy, dx = torch.randint(0, h - 32 + 1, (2, n), device=dev, generator=gen)
    x = padded.gather(2, (dy[:, None] + span)[:, None, :, None].expand(n, c, 32, w))
    x = x.gather(3, (dx[:, None] + span)[:, None, None, :].expand(n, c, 32, 32))
    x = torch.where((torch.rand(n, device=dev, generator=gen) < 0.5)[:, None, None, None], x.flip(3), x)
    y0, x0 = torch.randint(0, 32 - CUTOUT + 1, (2, n), device=dev, generator=gen)
    rows = (span >= y0[:, None]) & (span < y0[:, None] + CUTOUT)
    cols = (span >= x0[:, None]) & (span < x0[:, None] + CUTOUT)
    return x.masked_fill((rows[:, :, None] & cols[:, None, :])[:, None], 0)


def warm_up(model, padded, labels, test_images, test_labels, batch_size):
    """Run WARMUP_STEPS steps and one evaluation batch on the real model and data, then restore the
    model: cold-start costs land here, not in the timed run, which computes exactly what it would
    have without this (the augmentation draws from a throwaway generator, the optimizer is dropped)."""
    state = copy.deepcopy(model.state_dict())
    optimizer = make_optimizer(model, batch_size)
    gen = torch.Generator(padded.device).manual_seed(0)
    x = augment(padded[:batch_size], gen).contiguous(memory_format=torch.channels_last)
    order = torch.randperm(batch_size, device=padded.device, generator=gen)
    for _ in range(WARMUP_STEPS):
        train_step(model, optimizer, x[order], labels[:batch_size][order], PEAK_LR)
    evaluate(model, test_images[:EVAL_BATCH], test_labels[:EVAL_BATCH])
    model.load_state_dict(state)


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


class OneLineErrors(argparse.ArgumentParser):
    def error(self, message):  # one line on stderr and exit 2, instead of the usage dump
        self.exit(2, f"{self.prog}: error: {message}\n")


def parse_args(argv=None):
    p = OneLineErrors(description="DavidNet-style ResNet-9 CIFAR-10 trainer")
    p.add_argument("--epochs", type=int, default=EPOCHS)
    p.add_argument("--batch-size", type=int, default=BATCH_SIZE)
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--synthetic", action=argparse.BooleanOptionalAction, default=SYNTHETIC,
                   help="generated data of CIFAR-10's shape: no download")
    p.add_argument("--subset", type=int, default=SUBSET, help="use only the first N training images")
    p.add_argument("--data-dir", default=DATA_DIR,
                   help="default: $REMOTE_RUN_DATA/cifar10 (the shared cache), else ../data/cifar10")
    args = p.parse_args(argv)
    for name in ("epochs", "batch_size", "subset"):
        value = getattr(args, name)
        if value is not None and value < 1:
            p.error(f"--{name.replace('_', '-')} must be an integer >= 1, not {value}")
    args.data_dir = args.data_dir or default_data_dir(__file__)
    return args


def main(argv=None):
    """Train, print the table and the RESULT_DAVID line; returns the trained model."""
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
    dtype = torch.float16 if device.type == "cuda" else torch.float32  # fp16 speed on GPUs; CPUs stay fp32
    padded = F.pad(to_device(train_x, device, torch.float32), (CROP_PAD,) * 4, mode="reflect").to(dtype)
    test_images = to_device(test_x, device, dtype).contiguous(memory_format=torch.channels_last)
    train_labels, test_labels = train_y.to(device), test_y.to(device)
    model = make_model().to(device, dtype, memory_format=torch.channels_last)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.float()  # BatchNorm statistics and parameters stay fp32 (cuDNN takes fp16 input)
    batch_size = min(args.batch_size, len(train_labels))
    per_epoch = max(1, len(train_labels) // batch_size)  # the last partial batch is dropped
    if WARMUP_STEPS:
        start = time.perf_counter()
        warm_up(model, padded, train_labels, test_images, test_labels, batch_size)
        synchronize(device)
        print(f"warm-up: {WARMUP_STEPS} steps and 1 evaluation batch, {time.perf_counter() - start:.1f}s (not counted)",
              flush=True)
    optimizer = make_optimizer(model, batch_size)

    print(f"{'epoch':>7} {'train_loss':>10} {'train_acc':>9} {'val_acc':>8} {'time_s':>7}", flush=True)
    step, elapsed = 0, 0.0  # training only: see "What is timed" at the top
    for epoch in range(args.epochs):
        synchronize(device)
        start = time.perf_counter()
        images = augment(padded, gen).contiguous(memory_format=torch.channels_last)
        order = torch.randperm(len(images), device=device, generator=gen)
        loss_sum = correct = 0
        for i in range(per_epoch):
            idx = order[i * batch_size:(i + 1) * batch_size]
            lr = lr_at((step + 0.5) / per_epoch, args.epochs)  # evaluated mid-step
            loss, right = train_step(model, optimizer, images[idx], train_labels[idx], lr)
            loss_sum, correct, step = loss_sum + loss, correct + right, step + 1
        synchronize(device)
        epoch_time = time.perf_counter() - start
        elapsed += epoch_time
        start = time.perf_counter()
        val_acc = evaluate(model, test_images, test_labels)  # .item() has synchronised
        eval_seconds = time.perf_counter() - start
        seen = per_epoch * batch_size
        print(f"{epoch + 1:7d} {loss_sum.item() / seen:10.4f} {correct.item() / seen:9.4f} "
              f"{val_acc:8.4f} {epoch_time:7.2f}", flush=True)
    print(f"RESULT_DAVID elapsed_seconds={elapsed:.4f} epochs={args.epochs} batch_size={batch_size} "
          f"val_acc={val_acc:.4f} images_per_second={step * batch_size / elapsed:.1f} device={device.type} "
          f"eval_seconds={eval_seconds:.4f}")
    return model


if __name__ == "__main__":
    main()
