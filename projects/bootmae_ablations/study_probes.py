"""The downstream measures of the ablation study (``run_study.py``), each
with one fixed recipe for every variant: weighted k-NN and a linear probe
on frozen embeddings, and a short end-to-end fine-tune."""
import math

import torch
import torch.nn.functional as F

from bootmae_mm.evaluation import knn_accuracy
from bootmae_mm.evaluation.features import encoder_tokens, pool


def linear_probe(train_x, train_y, val_x, val_y, steps: int = 300,
                 lr: float = 0.05, weight_decay: float = 1e-4) -> float:
    """Val top-1 (%) of a logistic regression on standardized frozen
    embeddings (full-batch AdamW, cosine lr, zero init: deterministic)."""
    mean, std = train_x.mean(0), train_x.std(0) + 1e-6
    train_x, val_x = (train_x - mean) / std, (val_x - mean) / std
    num_classes = int(train_y.max()) + 1
    linear = torch.nn.Linear(train_x.shape[1], num_classes)
    torch.nn.init.zeros_(linear.weight)
    torch.nn.init.zeros_(linear.bias)
    opt = torch.optim.AdamW(linear.parameters(), lr=lr,
                            weight_decay=weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
    for _ in range(steps):
        opt.zero_grad()
        F.cross_entropy(linear(train_x), train_y).backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        return float((linear(val_x).argmax(1) == val_y).float().mean() * 100)


def knn(train_x, train_y, val_x, val_y) -> dict:
    """Weighted k-NN, k = 20, T = 0.07 (the monitor's protocol)."""
    return knn_accuracy(train_x, train_y, val_x, val_y, k=20,
                        temperature=0.07)


def _augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and a random crop of the image padded by an
    eighth of its side (reflect)."""
    B, _, H, W = x.shape
    flip = torch.rand(B, generator=generator) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(3), x)
    pad = max(1, H // 8)
    padded = F.pad(x, (pad, pad, pad, pad), mode='reflect')
    dy, dx = torch.randint(0, 2 * pad + 1, (2, ), generator=generator)
    return padded[:, :, dy:dy + H, dx:dx + W]


def fine_tune(encoder, train_imgs, train_y, val_imgs, val_y, steps: int = 300,
              batch_size: int = 64, lr: float = 1e-3, seed: int = 0) -> float:
    """Val top-1 (%) after fine-tuning ``encoder`` (in place) with a linear
    head on mean-pooled patch tokens: AdamW (weight decay 0.05), linear
    warm-up over a tenth of the steps then cosine, flip + crop.

    Args:
        encoder: the pretrained (or random) encoder, any
            :func:`~bootmae_mm.evaluation.features.encoder_tokens` takes.
        train_imgs, val_imgs (Tensor): preprocessed (N, C, H, W) images.
        train_y, val_y (Tensor): labels.
        steps, batch_size, lr: the recipe. seed: data order, augmentation.
    """
    g = torch.Generator().manual_seed(seed)
    num_classes = int(train_y.max()) + 1
    head = torch.nn.Linear(encoder.embed_dims, num_classes)
    torch.nn.init.trunc_normal_(head.weight, std=0.01)
    torch.nn.init.zeros_(head.bias)
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.05)
    warmup = max(1, steps // 10)

    def factor(step):
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) /
                                   max(1, steps - warmup)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    with_cls = getattr(encoder, 'with_cls_token', True)
    encoder.train()
    for _ in range(steps):
        idx = torch.randint(0, len(train_imgs), (batch_size, ), generator=g)
        x = _augment(train_imgs[idx], g)
        logits = head(pool(encoder_tokens(encoder, x), 'mean', with_cls))
        loss = F.cross_entropy(logits, train_y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    encoder.eval()
    correct = 0
    with torch.no_grad():
        for start in range(0, len(val_imgs), 256):
            x = val_imgs[start:start + 256]
            pred = head(pool(encoder_tokens(encoder, x), 'mean', with_cls))
            correct += int((pred.argmax(1) ==
                            val_y[start:start + 256]).sum())
    return 100. * correct / len(val_imgs)
