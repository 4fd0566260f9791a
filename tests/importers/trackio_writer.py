"""Write runs with the real trackio package (local mode: TRACKIO_DIR set, no Hub, no dashboard)."""

from __future__ import annotations

import math

import trackio

STEPS = 80


def write() -> None:
    trackio.init(
        project="speech",
        name="conformer",
        group="ablation",
        config={
            "lr": 3e-4,
            "layers": 12,
            "optimizer": "adamw",
            "amp": True,
            "data": {"set": "libri", "hours": 100},
        },
        embed=False,
    )
    for step in range(STEPS):
        trackio.log(
            {
                "loss": math.nan if step == 5 else 1 / (step + 1),
                "wer": 0.5 - step / 1000,
                "note": "text",
            },
            step=step,
        )
    trackio.log({"loss": 0.9}, step=2)  # a re-logged step: both points are kept
    trackio.finish()
    trackio.init(project="speech", name="baseline", config={"lr": 1e-3}, embed=False)
    for _ in range(3):
        trackio.log({"loss": 2.0})  # no step: trackio counts them
    trackio.finish()
    trackio.init(project="vision", name="vit", config={"patch": 16}, embed=False)
    trackio.log({"acc": 0.7}, step=0)
    trackio.finish()


if __name__ == "__main__":
    write()
