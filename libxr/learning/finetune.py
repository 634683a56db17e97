"""Fine-tuning: discriminative learning rates and gradual unfreezing (ULMFiT's two levers).

``--backbone-lr`` puts the head (the top-level part holding the model's ``head_name``) in one
parameter group at ``--lr`` and everything below it in another at the backbone's rate; every
schedule scales both alike. ``--unfreeze-every N`` starts from what ``--freeze`` froze and lets one
more block train every N epochs, from the top down. Every parameter is in the optimiser from the
start and freezing only toggles ``requires_grad`` (a parameter without a gradient is one no
optimiser moves), so the optimiser's and the schedule's states keep one shape for the whole run, and
which blocks train follows from the epoch alone: ``--resume`` continues exactly.
"""

from libxr.models.zoo import frozen_blocks


def param_groups(model, lr, backbone_lr=None):
    """The optimiser's parameter groups: one, or the head's at ``lr`` then the backbone's."""
    if backbone_lr is None:
        return [{"params": list(model.parameters())}]
    top = model.head_name.split(".")[0]
    named = list(model.named_parameters())
    head = [p for n, p in named if n.split(".")[0] == top]
    return [{"params": head, "lr": lr}, {"params": [p for n, p in named if n.split(".")[0] != top],
                                         "lr": backbone_lr}]


class Unfreezing:
    """Which of the blocks ``freeze`` stops train in each epoch: none for the first ``every`` epochs,
    then one more from the top every ``every`` epochs."""

    def __init__(self, model, freeze, every):
        self.blocks = [(n, b) for n, b in frozen_blocks(model, freeze) if any(True for _ in b.parameters())]
        self.every, self.thawed = every, 0

    def apply(self, epoch):
        """Set ``requires_grad`` for 0-based ``epoch``; a line saying what changed, or None."""
        thawed = min(epoch // self.every, len(self.blocks))
        if thawed == self.thawed:
            return None
        split = len(self.blocks) - thawed
        for i, (_, block) in enumerate(self.blocks):
            block.requires_grad_(i >= split)
        self.thawed = thawed
        frozen = [n for n, _ in self.blocks[:split]]
        return (f"epoch {epoch + 1}: {', '.join(n for n, _ in self.blocks[split:])} "
                f"{'train' if thawed > 1 else 'trains'}; "
                + (f"{len(frozen)} blocks stay frozen ({frozen[0]} .. {frozen[-1]})" if frozen else "nothing is frozen"))
