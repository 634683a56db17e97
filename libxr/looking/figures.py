"""The PNGs of xr-featmap: activation grids, Grad-CAM overlays and prediction sheets."""

import numpy as np

from libxr.judging.plots import figure


def _gray(pixels):
    """A (C, H, W) uint8 image as one (H, W) gray plane (channel 0 is the plain gray one)."""
    return np.asarray(pixels)[0]


def activation_grid(pixels, maps, png, title, channels=8):
    """One row per layer: the input, then its ``channels`` strongest channels (largest mean activation)."""
    rows = len(maps)
    with figure(png, channels + 1, rows, 1.6, 1.7) as (fig, axes):
        for r, (name, a) in enumerate(maps.items()):
            a = a.numpy()
            order = np.argsort(-a.reshape(len(a), -1).mean(1))[:channels]
            axes[r * (channels + 1)].imshow(_gray(pixels), cmap="gray")
            axes[r * (channels + 1)].set_ylabel(name, fontsize="x-small")
            for k, c in enumerate(order):
                ax = axes[r * (channels + 1) + 1 + k]
                ax.imshow(a[c], cmap="viridis")
                ax.set_title(f"ch {c}", fontsize="x-small")
            for ax in axes[r * (channels + 1):(r + 1) * (channels + 1)]:
                ax.set_xticks([])
                ax.set_yticks([])
            for ax in axes[r * (channels + 1) + 1 + len(order):(r + 1) * (channels + 1)]:
                ax.axis("off")
        fig.suptitle(title, fontsize="small")


def cam_overlay(pixels, cams, png, title):
    """The input, then each map (Grad-CAM, Grad-CAM++) over it."""
    with figure(png, 1 + len(cams), 1, 3.2, 3.4) as (fig, axes):
        axes[0].imshow(_gray(pixels), cmap="gray")
        axes[0].set_title("input", fontsize="small")
        for ax, (name, cam) in zip(axes[1:], cams.items()):
            ax.imshow(_gray(pixels), cmap="gray")
            ax.imshow(cam, cmap="jet", alpha=0.45, vmin=0, vmax=1)
            ax.set_title(name, fontsize="small")
        for ax in axes:
            ax.axis("off")
        fig.suptitle(title, fontsize="small")


def prediction_sheet(items, png, title, columns=6):
    """A contact sheet: ``items`` are (pixels, caption, correct) — right ones framed green, wrong red."""
    rows = max(1, -(-len(items) // columns))
    with figure(png, columns, rows, 2.2, 2.5) as (fig, axes):
        for ax in axes:
            ax.axis("off")
        for ax, (pixels, caption, correct) in zip(axes, items):
            ax.axis("on")
            ax.imshow(_gray(pixels), cmap="gray")
            ax.set_xticks([])
            ax.set_yticks([])
            color = "#1a9850" if correct else "#d73027"
            for spine in ax.spines.values():
                spine.set_edgecolor(color)
                spine.set_linewidth(4)
            ax.set_title(caption, fontsize="x-small", color=color)
        fig.suptitle(title, fontsize="small")
